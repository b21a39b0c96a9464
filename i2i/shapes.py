"""Synthetic shape images: one coloured shape on a plain white background, plus a deterministic reader.

Used by CycleGAN's ``builtin:shapes`` (domain A circles, domain B squares with one shared colour / position /
size distribution, so the true counterpart of every image is known) and by the demo text-to-image model
(captions like "a red circle", black outline sketches as FreeControl conditions). The reader
(:func:`read_shape`) recovers shape, colour, mask and centroid from any image of this kind, which is how both
are evaluated; :func:`read_object` does the same on backgrounds that are not white (tints, soft gradients).

Geometry is relative: a :class:`ShapeSpec` has its centre ``(cx, cy)`` and half-extent ``size`` as fractions
of the image side, so one spec renders at any resolution. Circle, square and triangle with the same spec share
one bounding box: a circle of radius ``size``, an axis-aligned square of half-side ``size``, and an upward
isosceles triangle with base and height ``2 * size``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

if TYPE_CHECKING:
    import numpy as np

# Named colours, far apart in RGB so that a reader can tell them apart after lossy generation.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 20),
    "purple": (140, 40, 180),
    "orange": (245, 130, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUND: tuple[int, int, int] = (255, 255, 255)
OUTLINE: tuple[int, int, int] = (0, 0, 0)
# Default half-extent range (fraction of the image side) and margin kept free around the shape.
SIZE_RANGE: tuple[float, float] = (0.16, 0.32)
# Below this chroma (largest minus smallest channel) a colour is black, grey or white, not one of COLOURS (the
# least chromatic of them, green, has 130): read_object gives such an object no colour.
MIN_CHROMA = 50
MARGIN = 0.04
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeSpec:
    """One shape: ``shape`` in :data:`SHAPES`, ``colour`` in :data:`COLOURS`, centre and half-extent as
    fractions of the image side (``cx`` from the left, ``cy`` from the top)."""

    shape: str
    colour: str
    cx: float
    cy: float
    size: float

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r} (known: {', '.join(SHAPES)})")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r} (known: {', '.join(COLOURS)})")
        if not 0.0 < self.size <= 0.5:
            raise ValueError(f"size {self.size} must be in (0, 0.5]")


def caption(spec: ShapeSpec) -> str:
    """The text prompt for ``spec``, e.g. ``"a red circle"``."""
    return f"a {spec.colour} {spec.shape}"


def random_spec(rng: random.Random, shape: str | None = None, colour: str | None = None,
                size_range: tuple[float, float] = SIZE_RANGE) -> ShapeSpec:
    """A random spec (shape and colour uniform unless given; size uniform in ``size_range``; centre uniform
    over the positions that keep the whole shape plus :data:`MARGIN` inside the image)."""
    shape = shape or rng.choice(SHAPES)
    colour = colour or rng.choice(sorted(COLOURS))
    size = rng.uniform(*size_range)
    lo, hi = size + MARGIN, 1.0 - size - MARGIN
    return ShapeSpec(shape, colour, rng.uniform(lo, hi), rng.uniform(lo, hi), size)


def counterpart(spec: ShapeSpec, shape: str) -> ShapeSpec:
    """The same colour, place and size as ``spec`` drawn as ``shape``."""
    return replace(spec, shape=shape)


def shapes_cyclegan_pair(index: int, seed: int = 0, size_range: tuple[float, float] = SIZE_RANGE
                         ) -> tuple[ShapeSpec, ShapeSpec]:
    """The ``index``-th (circle, square) pair of the builtin:shapes dataset for ``seed``: same colour, centre and
    size, so each is the other's true translation. A pure function of its arguments."""
    rng = random.Random(f"i2i-shapes:{seed}:{index}")
    circle = random_spec(rng, shape="circle", size_range=size_range)
    return circle, counterpart(circle, "square")


def moving_specs(start: ShapeSpec, frames: int, velocity: tuple[float, float]) -> list[ShapeSpec]:
    """A clip's worth of specs: ``start`` moved by ``velocity`` (fractions of the side per frame, x then y) each
    frame, bouncing off the edges so the shape plus :data:`MARGIN` stays inside. Only the centre changes, so the
    true motion between frames ``t - 1`` and ``t`` is ``(cx, cy)[t] - (cx, cy)[t - 1]`` (times the side in px),
    for the shape and for its counterpart (e.g. the square a circle translates to)."""
    lo, hi = start.size + MARGIN, 1.0 - start.size - MARGIN
    if lo > hi:
        raise ValueError(f"size {start.size} leaves no room to move")

    def bounce(p: float) -> float:           # reflect p into [lo, hi]
        span = hi - lo
        if span == 0:
            return lo
        q = (p - lo) % (2 * span)
        return lo + (q if q <= span else 2 * span - q)

    return [replace(start, cx=bounce(start.cx + t * velocity[0]), cy=bounce(start.cy + t * velocity[1]))
            for t in range(frames)]


def _polygon(spec: ShapeSpec, side: float) -> list[tuple[float, float]]:
    x, y, r = spec.cx * side, spec.cy * side, spec.size * side
    if spec.shape == "square":
        return [(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)]
    if spec.shape == "triangle":
        return [(x, y - r), (x + r, y + r), (x - r, y + r)]
    raise ValueError(spec.shape)


def _draw(spec: ShapeSpec, side: int, fill, outline, width: int, canvas: Image.Image) -> None:
    draw = ImageDraw.Draw(canvas)
    x, y, r = spec.cx * side, spec.cy * side, spec.size * side
    if spec.shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=outline, width=width)
    else:
        draw.polygon(_polygon(spec, side), fill=fill, outline=outline, width=width)


def render(spec: ShapeSpec, size: int, style: str = "filled") -> Image.Image:
    """Draw ``spec`` on a white ``size`` x ``size`` RGB image, anti-aliased.

    ``style="filled"``: the shape in its colour. ``style="outline"``: a black outline only (a sketch, the kind of
    condition FreeControl takes); its line width is about 3% of the side (at least 1 px).
    """
    if style not in ("filled", "outline"):
        raise ValueError(f"style must be 'filled' or 'outline', not {style!r}")
    big = size * _SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), BACKGROUND)
    if style == "filled":
        _draw(spec, big, COLOURS[spec.colour], None, 0, canvas)
    else:
        width = max(_SUPERSAMPLE, round(0.03 * big))
        _draw(spec, big, None, OUTLINE, width, canvas)
    return canvas.resize((size, size), Image.Resampling.BOX)


def render_coverage(spec: ShapeSpec, size: int) -> "np.ndarray":
    """How much of each pixel ``spec`` covers at ``size`` px: float32 array ``[size, size]`` in [0, 1]
    (anti-aliased, as :func:`render` draws it): the alpha to composite a shape over any background."""
    import numpy as np

    big = size * _SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    _draw(spec, big, 255, None, 0, canvas)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0


def render_mask(spec: ShapeSpec, size: int) -> "np.ndarray":
    """The filled region of ``spec`` at ``size`` px: bool array ``[size, size]`` (pixel more than half covered)."""
    return render_coverage(spec, size) >= 128 / 255.0


@dataclass(frozen=True)
class ShapeReading:
    """What :func:`read_shape` sees: ``shape``/``colour`` (None when there is no foreground), the foreground
    ``mask`` (bool ``[H, W]``), its ``centroid`` (x, y as fractions of width/height) and ``area`` (fraction)."""

    shape: str | None
    colour: str | None
    mask: "np.ndarray"
    centroid: tuple[float, float] | None
    area: float
    fill_ratio: float


def _largest_component(mask: "np.ndarray") -> "np.ndarray":
    import numpy as np
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == int(counts.argmax())


def nearest_colour(rgb: "np.ndarray") -> str:
    """The name in :data:`COLOURS` nearest to ``rgb`` (length-3, 0-255) in RGB distance."""
    import numpy as np

    names = list(COLOURS)
    table = np.array([COLOURS[n] for n in names], dtype=np.float64)
    return names[int(((table - np.asarray(rgb, dtype=np.float64)) ** 2).sum(1).argmin())]


def _core(mask: "np.ndarray") -> "np.ndarray":
    """The mask cropped to its bounding box, less the outermost rows and columns that hold a single pixel: specks
    on an outline (e.g. a generator's checkerboard artefacts) would otherwise widen the box by a pixel each, and
    on a 10-pixel square two of them make a clean square read as a circle."""
    import numpy as np

    ys, xs = np.nonzero(mask)
    box = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    for axis in (1, 0):                       # rows, then columns
        counts = box.sum(axis)
        lo, hi = 0, len(counts)
        while hi - lo > 2 and counts[lo] <= 1:
            lo += 1
        while hi - lo > 2 and counts[hi - 1] <= 1:
            hi -= 1
        box = box[lo:hi] if axis == 1 else box[:, lo:hi]
    return box


def classify_mask(mask: "np.ndarray") -> tuple[str | None, float]:
    """Shape name from a bool mask by how much of its bounding box it fills (square ~1.0, circle ~pi/4,
    triangle ~0.5) and where its width is largest (a triangle's widest row is at the bottom). Single-pixel
    specks at the edge of the box are left out (:func:`_core`). Returns ``(shape or None, fill_ratio)``."""
    import numpy as np

    if mask.sum() < 4:
        return None, 0.0
    box = _core(mask)
    fill = float(box.sum()) / float(box.size)
    if fill >= 0.89:
        return "square", fill
    rows = box.sum(1).astype(np.float64)
    third = max(1, len(rows) // 3)
    top, bottom = rows[:third].mean(), rows[-third:].mean()
    if fill < 0.66 or bottom > 1.6 * top:
        return "triangle", fill
    return "circle", fill


def foreground_mask(img: Image.Image, threshold: int = 60) -> "np.ndarray":
    """Pixels that differ from the white background by more than ``threshold`` in some channel: bool [H, W]."""
    import numpy as np

    arr = np.asarray(img.convert("RGB"), dtype=np.int16)
    return (255 - arr).max(axis=2) > threshold


def _describe(arr: "np.ndarray", mask: "np.ndarray", colour_pixels: "np.ndarray", min_chroma: float = 0.0
              ) -> ShapeReading:
    """A reading of the object ``mask`` (bool [H, W], non-empty) of the RGB array ``arr``, its colour the nearest
    named colour to the median of ``colour_pixels`` ([N, 3]), or None when that median's chroma (largest minus
    smallest channel) is below ``min_chroma``."""
    import numpy as np

    median = np.median(colour_pixels, axis=0)
    colour = nearest_colour(median) if float(median.max() - median.min()) >= min_chroma else None
    shape, fill = classify_mask(mask)
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    centroid = ((float(xs.mean()) + 0.5) / w, (float(ys.mean()) + 0.5) / h)
    return ShapeReading(shape, colour, mask, centroid, float(mask.mean()), fill)


def read_shape(img: Image.Image, threshold: int = 60) -> ShapeReading:
    """Read the shape, colour, mask and centroid of the (largest) coloured object in ``img``.

    Deterministic and model-free: the foreground is every pixel far from white, reduced to its largest connected
    component; the colour is the nearest named colour to the median foreground pixel (its inner part, away from
    anti-aliased edges, when there is one); the shape comes from :func:`classify_mask`. For images whose background
    is not white, see :func:`read_object`.
    """
    import numpy as np
    from scipy import ndimage

    rgb = img.convert("RGB")
    arr = np.asarray(rgb)
    mask = foreground_mask(rgb, threshold)
    if mask.sum() < 4:
        return ShapeReading(None, None, mask, None, 0.0, 0.0)
    mask = _largest_component(mask)
    inner = ndimage.binary_erosion(mask, iterations=1)
    return _describe(arr, mask, arr[inner if inner.sum() >= 4 else mask])


def border_ring(shape: tuple[int, int], width: int = 2) -> "np.ndarray":
    """The ``width``-pixel ring along the edges of an image of ``shape`` = ``(h, w)``: bool [h, w]."""
    import numpy as np

    ring = np.ones(shape, dtype=bool)
    ring[width:-width, width:-width] = False
    return ring


def estimate_background(arr: "np.ndarray", threshold: int = 60, ring: int = 2) -> "np.ndarray":
    """The background colour at every pixel of the RGB array ``arr`` ([H, W, 3]), as float [H, W, 3].

    Read off the ``ring``-pixel border: its median colour, refined by a plane per channel (``a + b x + c y``) fitted
    to the border pixels within ``threshold`` of that median, so that a flat background, a light tint and a soft
    linear gradient are all followed while an object touching the border does not pull the estimate. With too
    few such pixels (an object covering most of the border) the median alone is used."""
    import numpy as np

    h, w = arr.shape[:2]
    ys, xs = np.nonzero(border_ring((h, w), ring))
    pixels = arr[ys, xs].astype(np.float64)
    median = np.median(pixels, axis=0)
    keep = np.abs(pixels - median).max(axis=1) <= threshold
    if keep.sum() < max(8, len(keep) // 4):
        return np.broadcast_to(median, arr.shape).astype(np.float64)
    design = np.stack([np.ones(keep.sum()), xs[keep] / w, ys[keep] / h], axis=1)
    coef, *_ = np.linalg.lstsq(design, pixels[keep], rcond=None)
    gy, gx = np.mgrid[0:h, 0:w]
    return np.stack([np.ones((h, w)), gx / w, gy / h], axis=2) @ coef


def _fill_small_holes(mask: "np.ndarray", fraction: float = 0.1) -> "np.ndarray":
    """``mask`` with its holes filled where each is at most ``fraction`` of the filled area (the dots of a dotted
    fill): a ring's large inside stays open, so an outline is not read as a filled shape."""
    import numpy as np
    from scipy import ndimage

    filled = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(filled & ~mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    small = sizes <= fraction * filled.sum()
    small[0] = False
    return mask | small[labels]


def read_object(img: Image.Image, threshold: int = 60, ring: int = 2) -> ShapeReading:
    """Read the largest object of ``img`` on a background that need not be white (a tint, a soft gradient), as
    :func:`read_shape` does on white.

    The background is estimated from the ``ring``-pixel border (:func:`estimate_background`); the foreground is
    every pixel whose largest channel difference from it exceeds ``threshold``. Gaps of up to two pixels are
    closed and small holes filled (a striped or dotted fill reads as one object; an outline stays an outline), and
    the largest connected component is the object. Its colour is the nearest named colour to the median of its
    foreground pixels away from its edge (one pixel eroded, when that leaves any); its shape comes from
    :func:`classify_mask`.
    """
    import numpy as np
    from scipy import ndimage

    arr = np.asarray(img.convert("RGB"))
    diff = np.abs(arr.astype(np.float64) - estimate_background(arr, threshold, ring)).max(axis=2)
    foreground = diff > threshold
    if foreground.sum() < 4:
        return ShapeReading(None, None, foreground, None, 0.0, 0.0)
    padded = np.pad(foreground, 2)                # closing must not eat into an object touching the border
    closed = ndimage.binary_closing(padded, structure=np.ones((3, 3), bool), iterations=1)[2:-2, 2:-2]
    mask = _largest_component(_fill_small_holes(closed | foreground))
    inner = ndimage.binary_erosion(mask, iterations=1) & foreground
    own = mask & foreground
    return _describe(arr, mask, arr[inner if inner.sum() >= 4 else own], MIN_CHROMA)


def read_outline_region(img: Image.Image, threshold: int = 100) -> "np.ndarray":
    """The region enclosed by a dark outline sketch (e.g. ``render(spec, n, "outline")``), outline included:
    bool ``[H, W]``."""
    import numpy as np
    from scipy import ndimage

    arr = np.asarray(img.convert("L"), dtype=np.int16)
    return ndimage.binary_fill_holes(arr < 255 - threshold)


def iou(a: "np.ndarray", b: "np.ndarray") -> float:
    """Intersection over union of two bool masks of one shape (1.0 when both are empty)."""
    import numpy as np

    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum()) / float(union)
