"""CycleGAN/CUT training preprocessing (`apply_preprocess`) for every --preprocess mode, pinned to the rules of the
references' get_transform, written out by hand here (no reference code): resize / scale_width first, then the
crop, then (CUT) a bicubic resample of the whole image to the nearest multiple of 4, then the flip. The rules:

- scale_width: width := load size, height := int(max(load * h / w, crop size)); an image already that wide and at
  least crop-size tall is kept;
- the rounding: round(side / 4) * 4, Python's round (half to even), a resample of the whole image, no padding;
- crop offsets uniform over [0, side - crop] inclusive, x and y; flips with probability 0.5, not drawn with
  --no-flip;
- a one-channel domain: the image as RGB, then PIL's luma ('L'), before any resize.

The pixel comparison against the references themselves (CUT's data/base_dataset.py at its head, the CycleGAN
repository's) was made outside the suite: equal for every mode, size, flip and odd image."""

import random
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from i2i.cyclegan.data import Preprocess, apply_preprocess, check_trainable
from i2i.cyclegan.methods.cut import CUT
from i2i.images import convert_image

BICUBIC = Image.Resampling.BICUBIC


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A textured RGB image (smooth gradient plus noise), so that every resample shows in the pixels."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) % 256], axis=-1)
    arr = np.clip(base + rs.randint(-40, 41, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


class Draws:
    """A stand-in for the per-item RNG: returns chosen crop offsets and flip, and records what was asked for."""

    def __init__(self, x: int = 0, y: int = 0, flip: bool = False) -> None:
        self.values, self.flip, self.ranges, self.flips = [x, y], flip, [], 0

    def randint(self, a: int, b: int) -> int:
        self.ranges.append((a, b))
        return min(self.values.pop(0), b)

    def random(self) -> float:
        self.flips += 1
        return 0.0 if self.flip else 0.99


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("size, load, crop, scaled, trained", [
    ((300, 200), 286, 256, (286, 256), (288, 256)),   # height held at the crop size; width 286 -> 288
    ((201, 333), 286, 256, (286, 473), (288, 472)),   # int(473.88) = 473 -> 472
    ((255, 257), 256, 256, (256, 258), (256, 256)),   # 258 / 4 = 64.5 -> 64 (half to even) -> 256
    ((201, 333), 100, 100, (100, 165), (100, 164)),
    ((287, 286), 72, 64, (72, 71), (72, 72)),
    ((286, 300), 286, 256, (286, 300), (288, 300)),   # already 286 wide and tall enough: not scaled
    ((50, 1000), 72, 64, (72, 1440), (72, 1440)),
])
def test_scale_width_scales_then_rounds_the_whole_image(size, load, crop, scaled, trained):
    img = photo(*size)
    out = apply_preprocess(img, Preprocess("scale_width", load, crop, flip=False), Draws())
    step = img if scaled == size else img.resize(scaled, BICUBIC)
    assert same(out, step if trained == scaled else step.resize(trained, BICUBIC))
    assert check_trainable(size, Preprocess("scale_width", load, crop)) == trained


@pytest.mark.parametrize("size, trained", [((13, 7), (12, 8)), ((255, 257), (256, 256)), ((102, 98), (104, 96)),
                                           ((2, 2), (4, 4)), ((300, 200), (300, 200))])
def test_none_resamples_to_the_nearest_multiple_of_4(size, trained):
    img = photo(*size, seed=1)
    out = apply_preprocess(img, Preprocess("none", 286, 256, flip=False), Draws())
    assert same(out, img if trained == size else img.resize(trained, BICUBIC))   # a resample, not padding


@pytest.mark.parametrize("mode, size, load, crop, scaled", [
    ("resize_and_crop", (300, 200), 286, 256, (286, 286)),
    ("resize_and_crop", (201, 333), 72, 64, (72, 72)),
    ("crop", (300, 200), 286, 100, (300, 200)),
    ("crop", (256, 256), 256, 256, (256, 256)),
    ("scale_width_and_crop", (201, 333), 143, 128, (143, 236)),
    ("scale_width_and_crop", (300, 200), 286, 256, (286, 256)),
])
@pytest.mark.parametrize("flip", [False, True])
def test_crop_modes_crop_at_the_drawn_offsets_then_flip(mode, size, load, crop, scaled, flip):
    img = photo(*size, seed=2)
    draws = Draws(x=7, y=5, flip=flip)
    out = apply_preprocess(img, Preprocess(mode, load, crop, flip=True), draws)
    assert draws.ranges == [(0, scaled[0] - crop), (0, scaled[1] - crop)]         # inclusive, x then y
    x, y = min(7, scaled[0] - crop), min(5, scaled[1] - crop)
    step = img if scaled == size else img.resize(scaled, BICUBIC)
    want = step.crop((x, y, x + crop, y + crop))
    assert same(out, want.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else want)
    assert draws.flips == 1


def test_no_flip_draws_no_flip_and_an_image_smaller_than_the_crop_is_refused():
    draws = Draws()
    apply_preprocess(photo(300, 200), Preprocess("crop", 286, 100, flip=False), draws)
    assert draws.flips == 0
    from i2i.errors import InputError

    with pytest.raises(InputError, match="smaller than --crop-size"):
        apply_preprocess(photo(201, 333), Preprocess("crop", 286, 256), Draws())


def test_real_draws_cover_the_whole_offset_range_and_flip_half_the_time():
    img = photo(12, 10, seed=3)
    pre = Preprocess("crop", 12, 8, flip=True)
    seen, flips, n = set(), 0, 3000
    for seed in range(n):
        out = np.asarray(apply_preprocess(img, pre, random.Random(seed))).astype(int)
        for fl in (False, True):
            src = np.asarray(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if fl else img).astype(int)
            hits = [(x, y) for x in range(5) for y in range(3)
                    if np.array_equal(src[y:y + 8, (4 - x if fl else x):(4 - x if fl else x) + 8], out)]
            if hits:
                seen.add(hits[0])
                flips += fl
                break
    assert seen == {(x, y) for x in range(5) for y in range(3)}
    assert 0.46 < flips / n < 0.54


def test_cut_decay_phase_scales_width_to_the_crop_size():
    me = SimpleNamespace(config=SimpleNamespace(n_epochs=5))
    for mode in ("scale_width", "scale_width_and_crop"):
        pre = CUT.preprocess(me, Preprocess(mode, 286, 256, flip=False), 6)
        img = photo(201, 333, seed=4)
        draws = Draws(x=3, y=40)
        out = apply_preprocess(img, pre, draws)
        scaled = img.resize((256, 424), BICUBIC)                   # int(256 * 333 / 201) = 424
        assert same(out, scaled.crop((0, 40, 256, 296)) if "crop" in mode else scaled)
        assert draws.ranges == ([(0, 0), (0, 168)] if "crop" in mode else [])
        assert CUT.preprocess(me, Preprocess(mode, 286, 256), 5).load_size == 286


@pytest.mark.parametrize("make", [
    lambda: photo(30, 20),
    lambda: photo(30, 20).convert("P", palette=Image.Palette.ADAPTIVE, colors=60),
    lambda: photo(30, 20).convert("CMYK"),
    lambda: photo(30, 20).convert("1"),
    lambda: photo(30, 20).convert("RGBA"),                          # opaque
])
def test_a_one_channel_domain_takes_the_luma_of_the_rgb_image(make):
    img = make()
    assert same(convert_image(img, "L"), img.convert("RGB").convert("L"))
    grey = photo(30, 20).convert("L")
    assert same(convert_image(grey, "RGB"), grey.convert("RGB"))     # 'L' into a 3-channel domain: repeated
    out = apply_preprocess(convert_image(img, "L"), Preprocess("resize_and_crop", 36, 32, flip=False), Draws())
    assert out.mode == "L" and same(out, img.convert("RGB").convert("L").resize((36, 36), BICUBIC).crop((0, 0, 32, 32)))
