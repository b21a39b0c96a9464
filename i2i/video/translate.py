"""A CycleGAN, CUT or FastCUT generator on a video: :func:`translate_video` (one clip) and
:func:`translate_videos` (a batch, failures reported per clip like images).

Frames go through the generator in batches, with what image translation has (:mod:`i2i.cyclegan.translator`):
any frame size (padded to the generator's multiple and cropped back), ``size`` (work at the training scale and
resize back), ``tile`` for large frames, bf16/fp16 autocast. Opt-in temporal consistency: :mod:`i2i.video.temporal`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from i2i.cyclegan.config import CPU_VIDEO_BATCH, GPU_VIDEO_BATCH, GeneratorConfig
from i2i.cyclegan.translator import ROUNDING, TranslateConfig, TranslateResult, translate_tensor
from i2i.device import use_channels_last
from i2i.errors import I2IError, OutputError
from i2i.images import to_uint8
from i2i.progress import Reporter
from i2i.video.pipeline import VideoJobResult, run_video_job
from i2i.video.writing import EncodeSettings

if TYPE_CHECKING:
    from i2i.images import InputItem
    from i2i.video.temporal import TemporalConfig



@dataclass(frozen=True)
class VideoOptions:
    """How the translated clip is written: ``encode`` (codec, quality) and ``temporal`` (None: every frame as
    the generator gives it)."""

    encode: EncodeSettings = EncodeSettings()
    temporal: "TemporalConfig | None" = None


def frames_to_tensor(frames: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 frames ``[H, W, C]`` (or ``[H, W]``) -> float ``[N, C, H, W]`` in [-1, 1]."""
    x = torch.from_numpy(np.stack(frames))
    x = x[..., None] if x.ndim == 3 else x
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def tensor_to_frames(y: torch.Tensor) -> list[np.ndarray]:
    """float ``[N, C, H, W]`` in [-1, 1] -> uint8 frames ``[H, W, 3]`` (``[H, W]`` for one channel), quantised as
    the reference saves images (:data:`~i2i.cyclegan.translator.ROUNDING`)."""
    arr = to_uint8(y, ROUNDING).permute(0, 2, 3, 1).numpy()
    return [a[..., 0] if a.shape[-1] == 1 else a for a in arr]


def translate_video(source: str | os.PathLike, target: str | os.PathLike, gen: nn.Module, gen_cfg: GeneratorConfig,
                    cfg: TranslateConfig = TranslateConfig(), video: VideoOptions = VideoOptions(),
                    device: torch.device | str = "cpu", reporter: Reporter | None = None) -> VideoJobResult:
    """Translate every frame of ``source`` with ``gen`` into ``target`` (same frame count, rate, timestamps, size
    and audio). ``cfg``: batch size (default :data:`CPU_VIDEO_BATCH` / :data:`GPU_VIDEO_BATCH`), ``size``,
    ``tile``, ``precision``, ``overwrite`` as for images."""
    device = torch.device(device)
    gen = gen.to(device).eval()
    if use_channels_last(device):
        gen = gen.to(memory_format=torch.channels_last)
    batch = cfg.batch_size or (GPU_VIDEO_BATCH if device.type == "cuda" else CPU_VIDEO_BATCH)

    def process(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            y = translate_tensor(gen, gen_cfg, frames_to_tensor(frames), device, cfg.precision, cfg.tile,
                                 cfg.tile_overlap, batch, cfg.size)
        return tensor_to_frames(y)

    post = None
    if video.temporal is not None:
        from i2i.video.temporal import TemporalFilter

        post = TemporalFilter(video.temporal)
    return run_video_job(source, target, process, batch, grey=gen_cfg.input_nc == 1, settings=video.encode,
                         post=post, overwrite=cfg.overwrite, reporter=reporter)


def translate_videos(videos: Sequence["InputItem"], targets: Sequence[Path], gen: nn.Module,
                     gen_cfg: GeneratorConfig, cfg: TranslateConfig = TranslateConfig(),
                     video: VideoOptions = VideoOptions(), device: torch.device | str = "cpu",
                     reporter: Reporter | None = None, result: TranslateResult | None = None) -> TranslateResult:
    """Translate each video item to its target (:func:`i2i.video.files.video_targets`), one after the other. A
    clip that fails (unreadable, corrupt, existing output without ``overwrite``) is reported and skipped; the
    others go on. Adds to ``result`` (a new one if None) and returns it."""
    import av

    from i2i.images import stops_the_batch

    reporter = reporter or Reporter.library()
    result = result if result is not None else TranslateResult()
    for item, target in zip(videos, targets):
        try:
            job = translate_video(item.path, target, gen, gen_cfg, cfg, video, device, reporter)
        except (I2IError, av.FFmpegError) as exc:
            if not isinstance(exc, I2IError):          # FFmpeg refused something no check foresaw: this clip fails
                error = OutputError(f"{target}: cannot write the video ({getattr(exc, 'strerror', None) or exc})")
                error.__cause__, exc = exc, error
            if stops_the_batch(exc):
                raise exc                              # a full disk: every later clip would fail too
            result.fail(item.path, exc, reporter)
            continue
        result.ok.append(job.output)
        reporter.info(f"{item.path}: {job.frames} frames in {job.seconds:.1f} s ({job.fps:.2f} frames/s), "
                      f"audio {job.audio or 'none'} -> {job.output}")
        reporter.result(job.record())
    return result
