"""Unpaired data for CycleGAN: image folders (``DATAROOT/trainA``, ``trainB``) or the built-in synthetic
``builtin:shapes`` domains (A = circles, B = squares).

Sampling follows the reference's unaligned mode: an epoch has ``max(|A|, |B|)`` items; the A index walks a
shuffled order (``index % |A|``), the B index is drawn at random (or ``index % |B|`` with serial batches).
Unlike the reference, every random choice (order, B index, crop, flip) is a pure function of
``(seed, epoch, position)``, so a resumed run sees exactly the data an uninterrupted run would, with any number
of DataLoader workers or DDP ranks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from torch.utils.data import Dataset

from i2i.errors import InputError, UsageError
from i2i.images import image_to_tensor, load_image

BUILTIN_SHAPES = "builtin:shapes"


@dataclass(frozen=True)
class Preprocess:
    """How a training image becomes a crop: the reference's ``--preprocess``, ``--load-size``, ``--crop-size``,
    ``--no-flip``; ``multiple`` is the side multiple the generator needs and ``min_side`` the smallest side the
    networks train on (both used by ``none`` and ``scale_width``, which keep each image's own size)."""

    mode: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    multiple: int = 4
    min_side: int = 1


def _scale_width_size(size: tuple[int, int], target_width: int, crop_size: int) -> tuple[int, int]:
    """The reference's ``__scale_width``: width ``target_width``, height scaled but at least ``crop_size``."""
    w, h = size
    if w == target_width and h >= crop_size:
        return size
    return target_width, int(max(target_width * h / w, crop_size))


def _scale_width(img: Image.Image, target_width: int, crop_size: int) -> Image.Image:
    size = _scale_width_size(img.size, target_width, crop_size)
    return img if size == img.size else img.resize(size, Image.BICUBIC)


def check_trainable(size: tuple[int, int], pre: Preprocess, name: str = "image") -> tuple[int, int]:
    """The size ``(w, h)`` an image of ``size`` is trained at under ``pre`` (before a flip), or the
    :class:`InputError` :func:`apply_preprocess` would raise for it in the middle of training."""
    w, h = size
    if pre.mode == "resize_and_crop":
        w = h = pre.load_size
    elif pre.mode in ("scale_width", "scale_width_and_crop"):
        w, h = _scale_width_size((w, h), pre.load_size, pre.crop_size)
    if "crop" in pre.mode:
        if w < pre.crop_size or h < pre.crop_size:
            raise InputError(f"{name}: {w}x{h} is smaller than --crop-size {pre.crop_size} "
                             "(use --preprocess resize_and_crop, or a smaller --crop-size)")
        return pre.crop_size, pre.crop_size
    if pre.mode in ("none", "scale_width"):
        m = pre.multiple
        nw, nh = max(m, round(w / m) * m), max(m, round(h / m) * m)
        if min(nw, nh) < pre.min_side:
            raise InputError(f"{name}: {size[0]}x{size[1]} is too small to train on with --preprocess {pre.mode}: "
                             f"these networks need at least {pre.min_side} px a side (use --preprocess "
                             "resize_and_crop)")
        return nw, nh
    return w, h


def apply_preprocess(img: Image.Image, pre: Preprocess, rng: random.Random, name: str = "image") -> Image.Image:
    """Resize / crop / flip one PIL image as the reference's ``get_transform`` does (bicubic)."""
    mode = pre.mode
    if mode == "resize_and_crop":
        img = img.resize((pre.load_size, pre.load_size), Image.BICUBIC)
    elif mode in ("scale_width", "scale_width_and_crop"):
        img = _scale_width(img, pre.load_size, pre.crop_size)
    if "crop" in mode:
        check_trainable(img.size, replace(pre, mode="crop"), name)
        w, h = img.size
        x = rng.randint(0, w - pre.crop_size)
        y = rng.randint(0, h - pre.crop_size)
        img = img.crop((x, y, x + pre.crop_size, y + pre.crop_size))
    if mode in ("none", "scale_width"):
        nw, nh = check_trainable(img.size, replace(pre, mode="none"), name)
        w, h = img.size
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.BICUBIC)
    if pre.flip and rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack training samples into a batch; samples of different sizes (``--preprocess none`` or
    ``scale_width`` on images of several sizes) are a clear error instead of torch's."""
    for key in items[0]:
        sizes = {tuple(item[key].shape[-2:]) for item in items}
        if len(sizes) > 1:
            shown = " and ".join(f"{w}x{h}" for h, w in sorted(sizes)[:2])
            raise InputError(f"a batch of {len(items)} needs images of one size, got {shown}: use --batch-size 1 "
                             "or a --preprocess that crops")
    return torch.utils.data.default_collate(items)


def list_images(folder: Path, max_items: int | None = None) -> list[Path]:
    """Image files below ``folder`` (recursive, sorted), like the reference's make_dataset: linked folders are
    followed (each folder once), hidden files and folders (``.ipynb_checkpoints``) left out, as ``translate``
    reads a folder."""
    from i2i.images import walk_folder

    if not folder.is_dir():
        phase = folder.name[:-1] if folder.name[-1:] in ("A", "B") else "train"
        raise InputError(f"{folder}: no such folder (expected DATAROOT/{phase}A and DATAROOT/{phase}B)")
    paths = sorted(item.path for item in walk_folder(folder, videos=False))
    if not paths:
        raise InputError(f"{folder}: contains no images")
    return paths[:max_items] if max_items else paths


def validate_images(paths: list[Path], mode: str, warn: Callable[[str], None],
                    pre: Preprocess | None = None, sizes: set[tuple[int, int]] | None = None,
                    sources: dict[tuple[int, int], Path] | None = None) -> list[Path]:
    """Try to decode every file; report each bad one with ``warn`` and return the good ones. With ``pre``, an image
    that preprocessing could not train on (smaller than the crop, too small for the networks) is bad too, found
    here rather than when training draws it; ``sizes`` collects the sizes the good ones train at, ``sources`` their
    own sizes (each with the first image of that size)."""
    good = []
    for p in paths:
        try:
            img = load_image(p, mode=mode)
            if pre is not None:
                trained = check_trainable(img.size, pre, str(p))
                if sizes is not None:
                    sizes.add(trained)
                if sources is not None:
                    sources.setdefault(img.size, p)
        except InputError as exc:
            warn(f"skipping {exc}")
            continue
        good.append(p)
    return good


def epoch_plan(n_a: int, n_b: int, epoch: int, seed: int, serial: bool = False) -> list[tuple[int, int, int]]:
    """The items of one epoch: ``(a_index, b_index, augmentation_seed)`` for ``max(n_a, n_b)`` positions.

    A pure function of its arguments (the unaligned sampling of the reference, made reproducible).
    """
    length = max(n_a, n_b)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.arange(length) if serial else torch.randperm(length, generator=g)
    b_rand = torch.randint(0, n_b, (length,), generator=g)
    aug = torch.randint(0, 2**31 - 1, (length,), generator=g)
    plan = []
    for i in range(length):
        idx = int(order[i])
        b = idx % n_b if serial else int(b_rand[i])
        plan.append((idx % n_a, b, int(aug[i])))
    return plan


class UnalignedDataset(Dataset):
    """Pairs of unrelated A and B images. Keys are plan tuples ``(a_index, b_index, aug_seed)``.

    Returns ``{"A": [C, H, W], "B": [C, H, W]}`` in [-1, 1].
    """

    def __init__(self, paths_a: list[Path], paths_b: list[Path], pre: Preprocess, input_nc: int = 3,
                 output_nc: int = 3) -> None:
        self.paths_a, self.paths_b, self.pre = paths_a, paths_b, pre
        self.train_sizes: set[tuple[int, int]] = set()     # the sizes its images train at (build_dataset)
        self.source_sizes: dict[tuple[int, int], Path] = {}  # their own sizes, each with its first image
        self.mode_a = "RGB" if input_nc == 3 else "L"
        self.mode_b = "RGB" if output_nc == 3 else "L"

    @property
    def sizes(self) -> tuple[int, int]:
        return len(self.paths_a), len(self.paths_b)

    def _load(self, path: Path, mode: str, rng: random.Random) -> torch.Tensor:
        return image_to_tensor(apply_preprocess(load_image(path, mode=mode), self.pre, rng, str(path)))

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        a, b, aug = key
        rng_a, rng_b = random.Random(aug), random.Random(aug ^ 0x5DEECE66D)
        return {"A": self._load(self.paths_a[a], self.mode_a, rng_a),
                "B": self._load(self.paths_b[b], self.mode_b, rng_b)}


class ShapesDataset(Dataset):
    """The built-in synthetic domains: A = circles, B = squares, drawn from one colour/position/size
    distribution, rendered at ``pre.crop_size``. ``count`` images per domain."""

    def __init__(self, count: int, pre: Preprocess, seed: int = 0) -> None:
        self.count, self.pre, self.seed = count, pre, seed

    @property
    def sizes(self) -> tuple[int, int]:
        return self.count, self.count

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        from i2i.shapes import render, shapes_cyclegan_pair

        a, b, aug = key
        size = self.pre.crop_size
        spec_a = shapes_cyclegan_pair(a, self.seed)[0]
        spec_b = shapes_cyclegan_pair(b, self.seed)[1]
        rng = random.Random(aug)
        img_a, img_b = render(spec_a, size), render(spec_b, size)
        if self.pre.flip and rng.random() < 0.5:
            img_a = img_a.transpose(Image.FLIP_LEFT_RIGHT)
        if self.pre.flip and rng.random() < 0.5:
            img_b = img_b.transpose(Image.FLIP_LEFT_RIGHT)
        return {"A": image_to_tensor(img_a), "B": image_to_tensor(img_b)}


def build_dataset(dataroot: str, phase: str, pre: Preprocess, input_nc: int, output_nc: int,
                  max_items: int | None, shapes_count: int, seed: int,
                  warn: Callable[[str], None] = lambda m: None) -> Dataset:
    """The training dataset for ``dataroot`` (a folder or ``builtin:shapes``)."""
    if dataroot == BUILTIN_SHAPES:
        if input_nc != 3 or output_nc != 3:
            raise UsageError("builtin:shapes is RGB: use 3 input and output channels")
        return ShapesDataset(shapes_count, pre, seed)
    if dataroot.startswith("builtin:"):
        raise UsageError(f"unknown built-in dataset {dataroot!r} (available: {BUILTIN_SHAPES})")
    root = Path(dataroot)
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset folder")
    sizes: set[tuple[int, int]] = set()
    sources: dict[tuple[int, int], Path] = {}
    paths_a = validate_images(list_images(root / f"{phase}A", max_items), "RGB" if input_nc == 3 else "L", warn,
                              pre, sizes, sources)
    paths_b = validate_images(list_images(root / f"{phase}B", max_items), "RGB" if output_nc == 3 else "L", warn,
                              pre, sizes, sources)
    for name, paths in (("A", paths_a), ("B", paths_b)):
        if not paths:
            raise InputError(f"{root / (phase + name)}: no readable images")
    dataset = UnalignedDataset(paths_a, paths_b, pre, input_nc, output_nc)
    dataset.train_sizes.update(sizes)
    dataset.source_sizes.update(sources)
    return dataset
