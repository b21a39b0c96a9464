"""Synthetic shapes: deterministic pairs, rendering, and a reader that recovers what was drawn."""

import random

import numpy as np
import pytest
from PIL import Image

from i2i.shapes import (COLOURS, MARGIN, SHAPES, ShapeSpec, caption, counterpart, iou, moving_specs, random_spec,
                        read_outline_region, read_shape, render, render_mask, shapes_cyclegan_pair)


def test_cyclegan_pairs_share_everything_but_shape():
    circle, square = shapes_cyclegan_pair(7, seed=3)
    assert (circle.shape, square.shape) == ("circle", "square")
    assert (circle.colour, circle.cx, circle.cy, circle.size) == (square.colour, square.cx, square.cy, square.size)
    assert shapes_cyclegan_pair(7, seed=3) == (circle, square)          # pure function
    assert shapes_cyclegan_pair(8, seed=3) != (circle, square)
    assert shapes_cyclegan_pair(7, seed=4) != (circle, square)


def test_enough_colours_and_all_used():
    assert len(COLOURS) >= 6
    rng = random.Random(0)
    seen = {random_spec(rng).colour for _ in range(300)}
    assert seen == set(COLOURS)


@pytest.mark.parametrize("px", [32, 64])
def test_reader_recovers_rendered_shapes(px):
    rng = random.Random(px)
    for _ in range(150):
        spec = random_spec(rng)
        reading = read_shape(render(spec, px))
        assert (reading.shape, reading.colour) == (spec.shape, spec.colour), spec
        assert abs(reading.centroid[0] - spec.cx) < 0.05
        if spec.shape != "triangle":                                  # a triangle's centroid sits lower
            assert abs(reading.centroid[1] - spec.cy) < 0.05
        assert iou(reading.mask, render_mask(spec, px)) > 0.8


def test_shapes_stay_inside_the_image():
    rng = random.Random(1)
    for _ in range(200):
        spec = random_spec(rng)
        mask = render_mask(spec, 48)
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_outline_sketch_encloses_the_filled_shape():
    for shape in SHAPES:
        spec = ShapeSpec(shape, "blue", 0.4, 0.6, 0.25)
        sketch = render(spec, 64, style="outline")
        arr = np.asarray(sketch)
        assert (arr.reshape(-1, 3).max(1) - arr.reshape(-1, 3).min(1)).max() < 10   # black and white only
        assert read_shape(sketch).colour is not None                                  # the outline is dark
        assert iou(read_outline_region(sketch), render_mask(spec, 64)) > 0.85


def test_blank_and_noise_images():
    blank = read_shape(Image.new("RGB", (32, 32), "white"))
    assert blank.shape is None and blank.colour is None and blank.centroid is None
    g = np.random.default_rng(0)
    speckle = np.full((64, 64, 3), 255, np.uint8)
    speckle[10:30, 10:30] = COLOURS["green"]
    speckle[g.integers(0, 64, 20), g.integers(0, 64, 20)] = (0, 0, 0)   # isolated dark pixels
    reading = read_shape(Image.fromarray(speckle))
    assert (reading.shape, reading.colour) == ("square", "green")


def test_caption_and_counterpart():
    spec = ShapeSpec("circle", "red", 0.5, 0.5, 0.2)
    assert caption(spec) == "a red circle"
    assert counterpart(spec, "triangle") == ShapeSpec("triangle", "red", 0.5, 0.5, 0.2)
    with pytest.raises(ValueError):
        ShapeSpec("hexagon", "red", 0.5, 0.5, 0.2)
    with pytest.raises(ValueError):
        ShapeSpec("circle", "teal", 0.5, 0.5, 0.2)


def test_iou():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert iou(a, b) == pytest.approx(4 / 12)
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0


@pytest.mark.parametrize("specks", [1, 2, 4])
def test_specks_on_the_outline_do_not_change_the_reading(specks):
    """A generator's output often has isolated single-pixel specks just outside a shape's edge; each would widen
    the bounding box by a pixel (at 32 px two of them made a third of the squares read as circles)."""
    from scipy import ndimage

    rng = random.Random(specks)
    for n in range(150):
        spec = ShapeSpec(SHAPES[n % 3], rng.choice(sorted(COLOURS)), rng.uniform(0.35, 0.65),
                         rng.uniform(0.35, 0.65), rng.uniform(0.16, 0.32))
        img = np.asarray(render(spec, 32)).copy()
        mask = read_shape(Image.fromarray(img)).mask
        ring = [tuple(p) for p in np.argwhere(ndimage.binary_dilation(mask) & ~mask)]
        rng.shuffle(ring)
        chosen = []
        for y, x in ring:                        # isolated: no two in neighbouring rows or columns
            if len(chosen) < specks and all(abs(y - v) > 1 and abs(x - u) > 1 for v, u in chosen):
                chosen.append((y, x))
                img[y, x] = COLOURS[spec.colour]
        assert read_shape(Image.fromarray(img)).shape == spec.shape, (spec, specks)


def test_moving_specs_move_and_bounce_inside():
    start = ShapeSpec("circle", "red", 0.5, 0.5, 0.2)
    clip = moving_specs(start, 40, (0.03, -0.01))
    assert clip[0] == start and len(clip) == 40
    assert clip[1].cx == pytest.approx(0.53) and clip[1].cy == pytest.approx(0.49)
    assert all(0.2 + MARGIN - 1e-9 <= s.cx <= 0.8 - MARGIN + 1e-9 for s in clip)
    steps = [abs(b.cx - a.cx) for a, b in zip(clip, clip[1:])]
    assert max(steps) <= 0.03 + 1e-9 and any(b.cx < a.cx for a, b in zip(clip, clip[1:]))   # it turned back
    assert {(s.shape, s.colour, s.size) for s in clip} == {("circle", "red", 0.2)}


def composite(spec, px, background, stripes=0):
    """``spec`` filled in its colour over ``background`` ([px, px, 3]); ``stripes`` > 0: only every other band of
    that many pixel rows is painted (a striped fill with the background showing between)."""
    mask = render_mask(spec, px)
    if stripes:
        mask &= (np.arange(px)[:, None] // stripes % 2 == 0)
    out = np.where(mask[..., None], np.array(COLOURS[spec.colour], dtype=np.float64), background)
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


def tint(colour, amount, px):
    return np.broadcast_to(255 + amount * (np.array(COLOURS[colour], dtype=np.float64) - 255), (px, px, 3))


def gradient(px, start, end):
    t = (np.arange(px)[:, None] + np.arange(px)[None, :]) / (2 * (px - 1))     # diagonal ramp 0 .. 1
    return np.array(start, dtype=np.float64) + t[..., None] * (np.array(end) - np.array(start, dtype=np.float64))


BACKGROUNDS = {"white": lambda px: np.full((px, px, 3), 255.0),
               "tint": lambda px: tint("blue", 0.15, px),
               "warm tint": lambda px: tint("orange", 0.2, px),
               "gradient": lambda px: gradient(px, (255, 255, 255), (190, 205, 235)),
               "tint gradient": lambda px: gradient(px, (250, 235, 215), (215, 235, 250))}


@pytest.mark.parametrize("background", sorted(BACKGROUNDS))
def test_object_reader_on_tinted_and_gradient_backgrounds(background):
    from i2i.shapes import read_object

    rng = random.Random(background)
    for _ in range(40):
        spec = random_spec(rng)
        reading = read_object(composite(spec, 64, BACKGROUNDS[background](64)))
        assert (reading.shape, reading.colour) == (spec.shape, spec.colour), spec
        assert iou(reading.mask, render_mask(spec, 64)) > 0.85


def test_object_reader_where_the_white_reader_fails():
    from i2i.shapes import read_object

    spec = ShapeSpec("square", "yellow", 0.4, 0.6, 0.2)
    img = composite(spec, 64, gradient(64, (235, 235, 235), (150, 170, 200)))     # a darker gradient
    assert iou(read_shape(img).mask, render_mask(spec, 64)) < 0.5                 # the background reads as object
    assert iou(read_object(img).mask, render_mask(spec, 64)) > 0.9


@pytest.mark.parametrize("stripes", [1, 2])
def test_object_reader_joins_a_striped_fill(stripes):
    from i2i.shapes import read_object

    for shape, colour in (("circle", "green"), ("square", "purple"), ("triangle", "orange")):
        spec = ShapeSpec(shape, colour, 0.45, 0.55, 0.25)
        reading = read_object(composite(spec, 64, tint("blue", 0.1, 64), stripes=stripes))
        assert reading.colour == colour
        assert iou(reading.mask, render_mask(spec, 64)) > 0.85


def test_object_reader_border_and_second_object():
    from i2i.shapes import read_object

    big = ShapeSpec("square", "red", 0.16, 0.5, 0.2)                        # touches the left edge
    small = ShapeSpec("circle", "blue", 0.8, 0.25, 0.08)
    img = composite(big, 64, np.asarray(composite(small, 64, tint("yellow", 0.15, 64)), dtype=np.float64))
    reading = read_object(img)
    assert reading.colour == "red" and iou(reading.mask, render_mask(big, 64)) > 0.85
    blank = read_object(Image.fromarray(tint("green", 0.2, 32).astype(np.uint8)))
    assert (blank.shape, blank.colour, blank.area) == (None, None, 0.0)


def test_object_reader_fills_dots_but_not_an_outline():
    from i2i.shapes import read_object

    spec = ShapeSpec("circle", "blue", 0.5, 0.5, 0.3)
    dots = render_mask(spec, 64) & ~((np.arange(64)[:, None] % 6 < 3) & (np.arange(64)[None, :] % 6 < 3))
    dotted = Image.fromarray(np.where(dots[..., None], np.array(COLOURS["blue"], np.uint8), np.uint8(250)))
    assert iou(read_object(dotted).mask, render_mask(spec, 64)) > 0.9          # 3-px background dots inside
    outline = read_object(render(spec, 64, style="outline"))
    assert iou(outline.mask, render_mask(spec, 64)) < 0.3                      # a ring, not a disk
    assert outline.colour is None                                               # black is none of the colours


def test_object_reader_colour_of_shades_and_of_grey():
    from i2i.shapes import read_object

    spec = ShapeSpec("square", "red", 0.5, 0.5, 0.25)
    for rgb, colour in (((150, 25, 25), "red"), ((20, 110, 35), "green"), ((110, 110, 110), None),
                        ((40, 40, 60), None)):
        img = np.where(render_mask(spec, 64)[..., None], np.array(rgb, np.uint8), np.uint8(245))
        assert read_object(Image.fromarray(img)).colour == colour, rgb
