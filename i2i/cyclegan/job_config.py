"""The settings of ``translate`` and ``eval`` as the library takes them (torch-free, so that the CLI reads its
defaults from here instead of restating them): :class:`TranslateConfig`, :class:`EvalConfig`, and the defaults of
``export``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from i2i.cyclegan.config import CPU_BATCH, DECODE_WORKERS, GPU_BATCH, WORKER_MIN_CORES
from i2i.errors import UsageError
from i2i.images import check_file_name, check_image_ext, check_side, check_write_mode
from i2i.metrics import DOMAIN_SCORE_REMOVED

if TYPE_CHECKING:
    import torch

    from i2i.device import Precision

# ``export``: the example input side traced and checked, and the ONNX opset.
EXPORT_SIZE = 256
EXPORT_OPSET = 17


@dataclass(frozen=True)
class TranslateConfig:
    """Translation settings. ``batch_size`` and ``num_workers`` None: chosen for the device by
    :meth:`for_device`."""

    batch_size: int | None = None
    tile: int | None = None          # tile side in px (None: whole images)
    tile_overlap: int = 32
    size: int | None = None          # translate at this shorter side, output resized back (None: as it is)
    precision: "Precision" = "fp32"
    ext: str = ".png"
    suffix: str = ""
    overwrite: bool = False
    num_workers: int | None = None
    skip_existing: bool = False      # an existing output is done: counted in ``skipped``, not an error

    def __post_init__(self) -> None:
        check_write_mode(self.overwrite, self.skip_existing)
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if self.tile is not None and self.tile < 1:
            raise UsageError("--tile must be a positive number of pixels")
        if self.size is not None:
            check_side(self.size, "--size")
        if self.tile is not None and not 0 <= self.tile_overlap < self.tile:
            default = next(f.default for f in dataclasses.fields(self) if f.name == "tile_overlap")
            raise UsageError(f"--tile {self.tile} with --tile-overlap {self.tile_overlap} (its default is {default}): "
                             "the overlap must be at least 0 and smaller than the tile")
        if self.num_workers is not None and self.num_workers < 0:
            raise UsageError("--num-workers cannot be negative")
        check_file_name(self.suffix, "--suffix", part=True)
        if self.ext and not self.ext.startswith("."):             # "jpg" as the CLI takes it
            object.__setattr__(self, "ext", "." + self.ext)
        check_image_ext(check_file_name(self.ext, "--ext", part=True))

    def for_device(self, device: "torch.device") -> "TranslateConfig":
        """Unset batch size / workers filled in for ``device`` (:data:`i2i.cyclegan.config.GPU_BATCH` and the
        constants beside it: on a CPU one image at a time, as the convolutions already use every core)."""
        import os

        gpu = device.type == "cuda"
        batch = self.batch_size if self.batch_size is not None else (GPU_BATCH if gpu else CPU_BATCH)
        workers = self.num_workers if self.num_workers is not None else (
            DECODE_WORKERS if gpu or (os.cpu_count() or 1) >= WORKER_MIN_CORES else 0)
        return dataclasses.replace(self, batch_size=batch, num_workers=workers)


METRICS = ("fid", "kid")
RESOLUTIONS = ("train", "original")


@dataclass(frozen=True)
class EvalConfig:
    dataroot: str | None = None        # default: the run's training dataroot
    phase: str = "test"
    limit: int | None = None           # images per direction (default: all; shapes: SHAPES_EVAL_LIMIT)
    grid_rows: int = 6
    precision: str = "fp32"
    metrics: tuple[str, ...] = ()      # any of METRICS (image folders only)
    features: str = "inception"        # feature extractor for the metrics (i2i.metrics.registry)
    inception_weights: str | None = None
    resolution: str = "train"          # "train": images resized as in training; "original": as they are
    kid_subsets: int = 100
    best: bool = False                 # the run's best checkpoint (trained with --eval-every), not its latest

    def __post_init__(self) -> None:
        if "domain" in self.metrics:
            raise UsageError(f"--metrics domain: {DOMAIN_SCORE_REMOVED}; choose from {','.join(METRICS)}")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise UsageError(f"--metrics {','.join(unknown)}: choose from {','.join(METRICS)}")
        if self.resolution not in RESOLUTIONS:
            raise UsageError(f"--resolution {self.resolution!r}: use train or original")
        if self.kid_subsets < 1:
            raise UsageError("--kid-subsets must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be at least 1 (got {self.limit}); leave it out for all images")
        if self.metrics and self.limit is not None and self.limit < 2:      # found before translating anything
            raise UsageError(f"--metrics {','.join(self.metrics)} needs at least 2 images per set (--limit "
                             f"{self.limit})")
