"""Translate images with a trained generator: every input, at its original size, batched on the device.

- Scale: by default the generator sees each image as it is. ``size`` makes it work at a given shorter side (the
  scale it was trained at: a 32 px shapes model on a 256 px drawing) and resizes the output back.
- Sizes: each image is reflect-padded up to the generator's required multiple (4 for ResNet generators, 256 for
  unet_256, ...) and the output cropped back, so a 97x131 input gives a 97x131 output (the reference resizes or
  crops instead).
- Throughput: decoding runs in DataLoader workers ahead of the model; images of one size are batched together;
  ``inference_mode``, channels_last and an optional bf16/fp16 autocast.
- Large images: ``tile`` translates overlapping tiles and blends them with linear ramps over the overlap, so no
  seam shows and memory stays bounded by the tile size.
- Robustness: an unreadable input is reported and skipped, the batch continues; outputs are written atomically
  and never replace an existing file unless ``overwrite``. With ``skip_existing`` an output that exists is done
  (atomic writes: an output that exists is complete), so a stopped batch restarted with it ends with the files of
  an uninterrupted one; temporary files a killed run left beside its outputs are removed before they are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.job_config import TranslateConfig  # noqa: F401  (re-exported: its old home)
from i2i.cyclegan.networks import MIN_SIDE, required_multiple
from i2i.cyclegan.signals import leave_stops_to_the_main_process
from i2i.device import Precision, autocast, use_channels_last
from i2i.errors import I2IError, InputError, OutputError
from i2i.images import (InputItem, convert_image, image_to_tensor, load_image, output_path, remove_stale_temps,
                        save_image, stops_the_batch, tensor_to_image)
from i2i.progress import Reporter

# Outputs are quantised as the reference saves its images (``tensor2im`` truncates), so that a reference
# checkpoint's outputs equal its test script's to the grey level (rounding to nearest would differ by 1 in half).
ROUNDING = "down"


@dataclass
class TranslateResult:
    ok: list[Path] = field(default_factory=list)                 # written outputs
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    skipped: list[Path] = field(default_factory=list)            # outputs that existed (``skip_existing``)
    errors: list[I2IError] = field(default_factory=list, repr=False)   # the failures as raised, in order

    def fail(self, path: str | Path, exc: I2IError, reporter: Reporter) -> None:
        """Record and report one input's failure (the batch goes on)."""
        self.errors.append(exc)
        self.failed.append((str(path), str(exc)))
        reporter.item_error(str(path), str(exc))
        reporter.result({"input": str(path), "status": "error", "error": str(exc)})

    def failed_job(self, skip_existing: bool) -> bool:
        """Whether the failures fail the job (exit 1). With ``skip_existing`` (a restartable job) inputs that cannot
        be read do not: they stay unreadable on every restart, so the job is finished once everything else is
        written; they are named once on stderr and in the summary."""
        return any(not (skip_existing and isinstance(e, InputError)) for e in self.errors)

    def single_error(self, n_inputs: int) -> I2IError | None:
        """The error to raise as it is when a job's only input failed (its own exit code, e.g. 3 for an
        unreadable image), as every command does; None otherwise (exit 1 needs outputs beside the failures)."""
        return self.errors[0] if n_inputs == 1 and self.errors and not self.ok else None


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``x`` ``[N, C, H, W]`` on the bottom/right up to multiples of ``multiple``, and to at least
    :data:`MIN_SIDE` (reflection where the image is large enough, edge replication otherwise)."""
    h, w = x.shape[-2:]
    ph, pw = max(-h % multiple, MIN_SIDE - h), max(-w % multiple, MIN_SIDE - w)
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def run_generator(gen: nn.Module, x: torch.Tensor, multiple: int, device: torch.device,
                  precision: Precision = "fp32") -> torch.Tensor:
    """``gen`` on ``x`` ``[N, C, H, W]`` in [-1, 1] of any H, W: pad, run, crop. Returns fp32 ``[N, C', H, W]``
    on ``device``."""
    h, w = x.shape[-2:]
    x = pad_to_multiple(x.to(device, non_blocking=True), multiple)
    if use_channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, precision):
        y = gen(x)
    return y[..., :h, :w].float()


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, length)`` with at least ``overlap`` px shared
    between neighbours; the last tile ends exactly at ``length``."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def blend_ramp(size: int, overlap: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """Blending weights ``[size]`` for one tile along one axis: linear ramps of ``overlap`` px at the sides
    that overlap a neighbour, 1 elsewhere (strictly positive everywhere)."""
    w = torch.ones(size)
    if overlap > 0:
        ramp = (torch.arange(min(overlap, size), dtype=torch.float32) + 0.5) / overlap
        if ramp_start:
            w[:len(ramp)] = torch.minimum(w[:len(ramp)], ramp)
        if ramp_end:
            w[size - len(ramp):] = torch.minimum(w[size - len(ramp):], ramp.flip(0))
    return w


def translate_tiled(gen: nn.Module, x: torch.Tensor, multiple: int, device: torch.device, tile: int,
                    overlap: int, precision: Precision = "fp32", batch_size: int = 4) -> torch.Tensor:
    """Translate one image ``x`` ``[1, C, H, W]`` in overlapping tiles, blended; returns ``[1, C', H, W]`` on
    the CPU. Tiles smaller than the image are batched ``batch_size`` at a time."""
    _, _, h, w = x.shape
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    boxes = [(y, x0) for y in ys for x0 in xs]
    out: torch.Tensor | None = None
    weight = torch.zeros(1, 1, h, w)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        tiles = torch.cat([x[..., y:y + th, x0:x0 + tw] for y, x0 in chunk])
        y_out = run_generator(gen, tiles, multiple, device, precision).cpu()
        if out is None:
            out = torch.zeros(1, y_out.shape[1], h, w)
        for (y, x0), t in zip(chunk, y_out):
            wy = blend_ramp(th, overlap, y > 0, y + th < h)
            wx = blend_ramp(tw, overlap, x0 > 0, x0 + tw < w)
            wt = wy[:, None] * wx[None, :]
            out[0, :, y:y + th, x0:x0 + tw] += t * wt
            weight[0, 0, y:y + th, x0:x0 + tw] += wt
    assert out is not None
    return out / weight


def resize_shorter_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` ``[N, C, H, W]`` resized (bicubic, anti-aliased) so that its shorter side is ``size`` px."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    target = (max(1, round(h * scale)), max(1, round(w * scale)))
    if target == (h, w):
        return x
    return F.interpolate(x, size=target, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


def translate_tensor(gen: nn.Module, gen_cfg: GeneratorConfig, x: torch.Tensor, device: torch.device,
                     precision: Precision = "fp32", tile: int | None = None, tile_overlap: int = 32,
                     batch_size: int = 4, size: int | None = None) -> torch.Tensor:
    """Translate ``x`` ``[N, C, H, W]`` (one size) in [-1, 1]; tiled per image when ``tile`` is smaller than
    the image. ``size``: translate at that shorter side (the scale the generator was trained at) and resize the
    output back to ``H x W``. Returns ``[N, C', H, W]`` on the CPU."""
    if size is not None and min(x.shape[-2:]) != size:
        y = translate_tensor(gen, gen_cfg, resize_shorter_side(x, size), device, precision, tile, tile_overlap,
                             batch_size)
        return F.interpolate(y, size=tuple(x.shape[-2:]), mode="bicubic", antialias=True,
                             align_corners=False).clamp(-1, 1)
    multiple = required_multiple(gen_cfg)
    h, w = x.shape[-2:]
    if tile is not None and (h > tile or w > tile):
        return torch.cat([translate_tiled(gen, x[i:i + 1], multiple, device, tile, tile_overlap, precision,
                                          batch_size) for i in range(x.shape[0])])
    return run_generator(gen, x, multiple, device, precision).cpu()


def image_mode(gen_cfg: GeneratorConfig) -> str:
    """PIL mode the generator takes: RGB for 3 input channels, L for 1."""
    return "RGB" if gen_cfg.input_nc == 3 else "L"


def translate_pil(gen: nn.Module, gen_cfg: GeneratorConfig, img: Image.Image, device: torch.device | str,
                  precision: Precision = "fp32", tile: int | None = None, tile_overlap: int = 32,
                  size: int | None = None, rounding: str = ROUNDING) -> Image.Image:
    """Translate one PIL image (converted to the generator's mode first); the output has the input's size.
    ``size``: work at that shorter side, e.g. the training resolution (None: at the image's own size);
    ``rounding``: how outputs become grey levels (:func:`i2i.images.to_uint8`; the reference's by default)."""
    device = torch.device(device)
    x = image_to_tensor(convert_image(img, image_mode(gen_cfg)))[None]
    with torch.inference_mode():
        y = translate_tensor(gen, gen_cfg, x, device, precision, tile, tile_overlap, size=size)
    return tensor_to_image(y[0], rounding)


class _Decoded(torch.utils.data.Dataset):
    """Decodes inputs in DataLoader workers: item ``i`` -> ``(i, tensor [C, H, W] or None, error or None)``."""

    def __init__(self, items: Sequence[InputItem], mode: str) -> None:
        self.items, self.mode = list(items), mode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return i, image_to_tensor(load_image(self.items[i].path, mode=self.mode)), None
        except I2IError as exc:
            return i, None, str(exc)
        except Exception as exc:  # a decoder bug on an odd file must not stop the batch
            return i, None, f"{self.items[i].path}: cannot read ({type(exc).__name__}: {exc})"


def _as_list(batch: list) -> list:
    return batch


def translate_images(items: Sequence[InputItem], gen: nn.Module, gen_cfg: GeneratorConfig,
                     out_dir: str | Path, cfg: TranslateConfig = TranslateConfig(),
                     device: torch.device | str = "cpu", reporter: Reporter | None = None) -> TranslateResult:
    """Translate every item into ``out_dir`` (keeping its relative path); returns what was written and what
    failed. Existing outputs are failures unless ``cfg.overwrite``, or skipped (``result.skipped``) with
    ``cfg.skip_existing``; checked before any work."""
    reporter = reporter or Reporter.library()
    device = torch.device(device)
    cfg = cfg.for_device(device)
    gen = gen.to(device).eval()
    if use_channels_last(device):
        gen = gen.to(memory_format=torch.channels_last)
    result = TranslateResult()
    targets = {i: output_path(it, out_dir, cfg.suffix, cfg.ext) for i, it in enumerate(items)}
    todo = []
    for i, it in enumerate(items):
        if cfg.skip_existing and targets[i].exists():
            result.skipped.append(targets[i])
        elif not cfg.overwrite and targets[i].exists():
            result.fail(it.path, OutputError(f"{targets[i]}: already exists (pass --overwrite to replace it)"),
                        reporter)
        else:
            todo.append(it)
    if not todo:
        return result
    index = {id(it): i for i, it in enumerate(items)}
    if remove_stale_temps([targets[index[id(it)]] for it in todo]):
        reporter.info("removed temporary files an interrupted run left beside the outputs")
    workers = cfg.num_workers if len(todo) > 2 * max(cfg.num_workers, 1) else 0
    loader = torch.utils.data.DataLoader(_Decoded(todo, image_mode(gen_cfg)), batch_size=None,
                                         shuffle=False, num_workers=workers, collate_fn=_as_list,
                                         pin_memory=device.type == "cuda",
                                         worker_init_fn=leave_stops_to_the_main_process)
    pending: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}

    def flush(key: tuple[int, ...], advance) -> None:
        group = pending.pop(key)
        with torch.inference_mode():
            ys = translate_tensor(gen, gen_cfg, torch.stack([t for _, t in group]), device, cfg.precision,
                                  cfg.tile, cfg.tile_overlap, cfg.batch_size, cfg.size)
        for (j, _), y in zip(group, ys):
            item = todo[j]
            target = targets[index[id(item)]]
            try:
                save_image(tensor_to_image(y, ROUNDING), target, overwrite=cfg.overwrite)
            except I2IError as exc:
                if isinstance(exc, OutputError) and cfg.skip_existing and target.exists():
                    result.skipped.append(target)    # written meanwhile by another run of the same job
                elif stops_the_batch(exc):
                    raise                            # a full disk: every later output would fail too
                else:
                    result.fail(item.path, exc, reporter)
            else:
                result.ok.append(target)
                reporter.result({"input": str(item.path), "output": str(target), "status": "ok",
                                 "width": y.shape[-1], "height": y.shape[-2]})
            advance(1)

    with reporter.progress(len(todo), "translate") as advance:
        for j, x, error in loader:
            if x is None:
                result.fail(todo[j].path, InputError(error or f"{todo[j].path}: cannot read"), reporter)
                advance(1)
                continue
            key = tuple(x.shape)
            pending.setdefault(key, []).append((j, x))
            if len(pending[key]) >= cfg.batch_size:
                flush(key, advance)
            elif sum(map(len, pending.values())) > 4 * cfg.batch_size:  # many sizes: bound the memory held
                flush(max(pending, key=lambda k: len(pending[k])), advance)
        for key in list(pending):
            flush(key, advance)
    return result
