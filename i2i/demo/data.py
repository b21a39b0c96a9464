"""Training data of the demo text-to-image model: one shape per image, with a caption.

Drawn by :mod:`i2i.shapes` (the module that also feeds CycleGAN's builtin:shapes). Most images are filled
shapes captioned "a {colour} {shape}"; some captions leave the colour out or use the generic FreeControl
analysis prompt, so that those prompts mean something to the model; some images are black outline sketches
("an outline of a {shape}"), the kind of condition the demo feeds FreeControl. Every sample is a pure function
of ``(seed, index)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image

from i2i.shapes import COLOURS, SHAPES, ShapeSpec, caption, random_spec, render

# The generic prompt FreeControl's analysis stage uses to draw its seed images ("{}" = the concept).
GENERIC_PROMPT = "a photo of a {}, with a simple background, best quality, extremely detailed"
OUTLINE_PROMPT = "an outline of a {}"
VOCABULARY: tuple[str, ...] = tuple(sorted(
    {*COLOURS, *SHAPES, "a", "an", "of", "outline", "sketch", "shape"}
    | set(GENERIC_PROMPT.replace("{}", "").replace(",", " ").split())))
IMAGE_SIZE = 64
# Shares of the caption kinds (the rest: "a {colour} {shape}").
OUTLINE_SHARE = 0.15
SHAPE_ONLY_SHARE = 0.10
GENERIC_SHARE = 0.10


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    caption: str
    spec: ShapeSpec
    style: str             # "filled" or "outline"


def sample(index: int, seed: int = 0, size: int = IMAGE_SIZE) -> Sample:
    """The ``index``-th training sample for ``seed``."""
    rng = random.Random(f"i2i-demo:{seed}:{index}")
    spec = random_spec(rng)
    u = rng.random()
    if u < OUTLINE_SHARE:
        return Sample(render(spec, size, style="outline"), OUTLINE_PROMPT.format(spec.shape), spec, "outline")
    u -= OUTLINE_SHARE
    if u < SHAPE_ONLY_SHARE:
        text = f"a {spec.shape}"
    elif u < SHAPE_ONLY_SHARE + GENERIC_SHARE:
        text = GENERIC_PROMPT.format(spec.shape)
    else:
        text = caption(spec)
    return Sample(render(spec, size), text, spec, "filled")


def eval_prompts() -> list[tuple[str, str, str]]:
    """Every (prompt, shape, colour) the evaluation asks for: all colours x all shapes."""
    return [(f"a {c} {s}", s, c) for s in SHAPES for c in COLOURS]
