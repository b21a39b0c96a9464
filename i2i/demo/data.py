"""Training data of the demo text-to-image model (v2): scenes whose look is only partly named by their caption.

Every image holds one main object (a circle, square or triangle from :mod:`i2i.shapes`, which also feeds CycleGAN's
``builtin:shapes``), and the caption names at most its shape and colour. What the caption leaves out still varies
from image to image, so a model trained on these scenes has to keep it somewhere other than in the text: in its
latents and self-attention, where FreeControl's appearance energy and Ctrl-X's appearance transfer look for it:

- the background: white, a light tint, or a soft gradient between two tints;
- the fill: solid, stripes at any angle, or a checker of the colour and a slightly darker shade, with the shade
  itself jittered;
- sometimes a second, smaller object of another shape and colour;
- optionally (``twin_share``, off by default) a *twin*: a second object with the main one's colour and fill, in a
  scene whose caption names no colour, so that drawing one object well means looking at the other one (the
  correspondence Ctrl-X's appearance transfer relies on);
- the colour itself, for the captions that name only the shape ("a circle") or use the generic analysis prompt.

For training with paired self-attention (``pair_share``, off by default), :func:`pair_sample` gives two scenes of
one look in two layouts, the first captioned without its colour.

Some images are black outline sketches on white ("an outline of a {shape}"), the condition FreeControl and Ctrl-X
are fed. Every sample is a pure function of ``(seed, index)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from PIL import Image

from i2i.shapes import COLOURS, SHAPES, ShapeSpec, random_spec, render, render_coverage

# The generic prompt FreeControl's analysis stage uses to draw its seed images ("{}" = the concept).
GENERIC_PROMPT = "a photo of a {}, with a simple background, best quality, extremely detailed"
OUTLINE_PROMPT = "an outline of a {}"
VOCABULARY: tuple[str, ...] = tuple(sorted(
    {*COLOURS, *SHAPES, "a", "an", "of", "outline", "sketch", "shape"}
    | set(GENERIC_PROMPT.replace("{}", "").replace(",", " ").split())))
IMAGE_SIZE = 64
OUTLINE_SHARE = 0.15
# Captions of the filled scenes: (kind, share); "colour" = "a {colour} {shape}".
CAPTION_SHARES: tuple[tuple[str, float], ...] = (("colour", 0.60), ("shape", 0.28), ("generic", 0.12))
BACKGROUND_SHARES: tuple[tuple[str, float], ...] = (("white", 0.45), ("tint", 0.35), ("gradient", 0.20))
FILL_SHARES: tuple[tuple[str, float], ...] = (("solid", 0.60), ("stripes", 0.20), ("checks", 0.20))
SECOND_OBJECT_SHARE = 0.25
TINT_RANGE = (205, 255)          # each channel of a background tint: light, far from every named colour
SHADE_RANGE = (0.94, 1.06)       # the object's colour is multiplied by this
PATTERN_DARKER = 0.88            # the second tone of stripes and checks: the colour times this
SECOND_SIZE_RANGE = (0.07, 0.11)
TWIN_SIZE_RANGE = (0.08, 0.16)
TWIN_CAPTION_SHARES: tuple[tuple[str, float], ...] = (("shape", 0.7), ("generic", 0.3))   # never the colour


@dataclass(frozen=True)
class Scene:
    """What one filled image shows. ``background`` is two RGB colours (equal unless a gradient) and the gradient's
    direction in degrees; ``fill`` is "solid", "stripes" or "checks" with its ``period`` (px at 64 px) and
    ``angle``; ``second`` an optional smaller object, drawn with the main object's fill when ``twin``."""

    main: ShapeSpec
    background: tuple[tuple[int, int, int], tuple[int, int, int], float]
    fill: str
    shade: float
    period: float
    angle: float
    second: ShapeSpec | None
    twin: bool = False       # the second object has the main one's colour, shade and fill


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    caption: str
    spec: ShapeSpec
    style: str             # "filled" or "outline"
    scene: Scene | None = None


def _pick(rng: random.Random, shares: tuple[tuple[str, float], ...]) -> str:
    u = rng.random()
    for name, share in shares:
        if u < share:
            return name
        u -= share
    return shares[-1][0]


def _tint(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(*TINT_RANGE) for _ in range(3))  # type: ignore[return-value]


def _clear_of(main: ShapeSpec, draw: Callable[[], ShapeSpec], tries: int) -> ShapeSpec | None:
    """The first of up to ``tries`` objects from ``draw()`` that does not touch ``main`` (None if all do)."""
    for _ in range(tries):
        spec = draw()
        if max(abs(spec.cx - main.cx), abs(spec.cy - main.cy)) > spec.size + main.size + 0.04:
            return spec
    return None


def _second_object(rng: random.Random, main: ShapeSpec) -> ShapeSpec | None:
    """A small object of another shape and colour that does not touch ``main`` (None after a few misses)."""
    return _clear_of(main, lambda: random_spec(rng, shape=rng.choice([s for s in SHAPES if s != main.shape]),
                                               colour=rng.choice(sorted(c for c in COLOURS if c != main.colour)),
                                               size_range=SECOND_SIZE_RANGE), tries=8)


def _twin(rng: random.Random, main: ShapeSpec) -> ShapeSpec | None:
    """An object of any shape in ``main``'s colour that does not touch ``main`` (None after a few misses)."""
    return _clear_of(main, lambda: random_spec(rng, shape=rng.choice(SHAPES), colour=main.colour,
                                               size_range=TWIN_SIZE_RANGE), tries=16)


def random_scene(rng: random.Random, main: ShapeSpec | None = None) -> Scene:
    """A random scene around ``main`` (a random spec when None)."""
    main = main or random_spec(rng)
    kind = _pick(rng, BACKGROUND_SHARES)
    first = (255, 255, 255) if kind == "white" else _tint(rng)
    second = _tint(rng) if kind == "gradient" else first
    background = (first, second, rng.uniform(0.0, 360.0))
    fill = _pick(rng, FILL_SHARES)
    shade, period, angle = rng.uniform(*SHADE_RANGE), rng.uniform(3.0, 7.0), rng.uniform(0.0, 180.0)
    extra = _second_object(rng, main) if rng.random() < SECOND_OBJECT_SHARE else None
    return Scene(main, background, fill, shade, period, angle, extra)


def _grid(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (in 64 px units) along and across the direction ``angle``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) * (IMAGE_SIZE / size)
    a = np.deg2rad(angle)
    return x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)


def _background(scene: Scene, size: int) -> np.ndarray:
    first, second, angle = scene.background
    along, _ = _grid(size, angle)
    t = (along - along.min()) / max(float(along.max() - along.min()), 1e-6)
    a, b = np.array(first, np.float32), np.array(second, np.float32)
    return a + (b - a) * t[..., None]


def _fill(scene: Scene, size: int) -> np.ndarray:
    base = np.clip(np.array(COLOURS[scene.main.colour], np.float32) * scene.shade, 0, 255)
    if scene.fill == "solid":
        return np.broadcast_to(base, (size, size, 3))
    along, across = _grid(size, scene.angle)
    if scene.fill == "stripes":
        dark = np.floor(along / scene.period) % 2 == 1
    else:
        dark = (np.floor(along / scene.period) + np.floor(across / scene.period)) % 2 == 1
    return np.where(dark[..., None], base * PATTERN_DARKER, base)


def render_scene(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw ``scene`` at ``size`` px: background, then the second object, then the main object (anti-aliased)."""
    canvas = _background(scene, size)
    if scene.second is not None:
        alpha = render_coverage(scene.second, size)[..., None]
        look = _fill(scene, size) if scene.twin else np.array(COLOURS[scene.second.colour], np.float32)
        canvas = canvas * (1 - alpha) + look * alpha
    alpha = render_coverage(scene.main, size)[..., None]
    canvas = canvas * (1 - alpha) + _fill(scene, size) * alpha
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")


def _caption(rng: random.Random, spec: ShapeSpec, shares: tuple[tuple[str, float], ...] = CAPTION_SHARES) -> str:
    kind = _pick(rng, shares)
    if kind == "colour":
        return f"a {spec.colour} {spec.shape}"
    if kind == "shape":
        return f"a {spec.shape}"
    return GENERIC_PROMPT.format(spec.shape)


def sample(index: int, seed: int = 0, size: int = IMAGE_SIZE, twin_share: float = 0.0) -> Sample:
    """The ``index``-th training sample for ``seed``; a share ``twin_share`` of the filled scenes get a twin. The
    twins draw from a random stream of their own, so ``twin_share=0`` gives exactly the scenes of earlier runs."""
    rng = random.Random(f"i2i-demo-v2:{seed}:{index}")
    spec = random_spec(rng)
    if rng.random() < OUTLINE_SHARE:
        return Sample(render(spec, size, style="outline"), OUTLINE_PROMPT.format(spec.shape), spec, "outline")
    scene = random_scene(rng, spec)
    caption = _caption(rng, spec)
    twin_rng = random.Random(f"i2i-demo-twin:{seed}:{index}")
    if twin_share > 0 and twin_rng.random() < twin_share and (twin := _twin(twin_rng, spec)) is not None:
        scene = replace(scene, second=twin, twin=True)
        caption = _caption(twin_rng, spec, TWIN_CAPTION_SHARES)
    return Sample(render_scene(scene, size), caption, spec, "filled", scene)


PAIR_CAPTION_SHARES: tuple[tuple[str, float], ...] = (("shape", 0.7), ("generic", 0.3))   # the first image's


def pair_sample(index: int, seed: int = 0, size: int = IMAGE_SIZE) -> tuple[Sample, Sample]:
    """The ``index``-th training *pair* for ``seed``: two filled scenes with one look (background, the object's
    colour, shade and fill) and two layouts (each object's own shape, size and position; no second objects). The
    first's caption names no colour, so its look can only be read from the second image (which the UNet stage's
    paired self-attention lets it see); the second is captioned as any filled scene. A random stream of its own,
    so pairs leave every single sample as it was."""
    rng = random.Random(f"i2i-demo-pair:{seed}:{index}")
    first = random_spec(rng)
    scene = replace(random_scene(rng, first), second=None)
    other = replace(scene, main=random_spec(rng, colour=first.colour))
    images = (render_scene(scene, size), render_scene(other, size))
    return (Sample(images[0], _caption(rng, first, PAIR_CAPTION_SHARES), first, "filled", scene),
            Sample(images[1], _caption(rng, other.main), other.main, "filled", other))


def eval_prompts() -> list[tuple[str, str, str]]:
    """Every (prompt, shape, colour) the evaluation asks for: all colours x all shapes."""
    return [(f"a {c} {s}", s, c) for s in SHAPES for c in COLOURS]
