"""Training-free diffusion control on a video: each input frame is the structure (Ctrl-X) or condition
(FreeControl) of one output frame, generated with the SAME seed, so every frame starts from the same initial
noise and a still scene stays still. The output clip keeps the input's frame count, timestamps and audio; its
frames have the pipeline's output size (the structure's aspect ratio at the model's size).

This module only knows "a function from one frame to one image" (:data:`FrameFn`); :func:`ctrlx_frames` and
:func:`freecontrol_frames` make one from a pipeline. Frames are generated one at a time (the pipelines' own batch
size), in the caller's thread, with decoding and encoding beside it (:mod:`i2i.video.pipeline`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from i2i.progress import Reporter
from i2i.video.pipeline import VideoJobResult, run_video_job
from i2i.video.writing import EncodeSettings

FrameFn = Callable[[Image.Image], Image.Image]


def ctrlx_frames(pipe: Any, prompt: str, seed: int, **kwargs: Any) -> FrameFn:
    """Each frame as the structure image of a :class:`~i2i.ctrlx.pipeline.CtrlXPipeline` call with ``seed``
    (``kwargs``: ``appearance``, ``config``, ...; the branches are not decoded)."""
    return lambda frame: pipe(prompt, structure=frame, seed=seed, decode_branches=False, **kwargs).images[0]


def freecontrol_frames(pipe: Any, prompt: str, seed: int, **kwargs: Any) -> FrameFn:
    """Each frame as the condition image of a :class:`~i2i.freecontrol.pipeline.FreeControlPipeline` call with
    ``seed`` (``kwargs``: ``config``, ``appearance``, ...; no unguided siblings). Each frame is a new condition,
    so each is DDIM-inverted once and cached like any condition image."""
    return lambda frame: pipe(prompt, condition=frame, seed=seed, unguided=False, **kwargs).images[0]


def generate_video(source: str | os.PathLike, target: str | os.PathLike, frame_fn: FrameFn,
                   settings: EncodeSettings = EncodeSettings(), overwrite: bool = False,
                   reporter: Reporter | None = None) -> VideoJobResult:
    """Write ``frame_fn(frame)`` for every frame of ``source`` to ``target`` (atomically, progress in frames,
    the source's timestamps and audio; see :func:`i2i.video.pipeline.run_video_job`)."""

    def process(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(frame_fn(Image.fromarray(f)).convert("RGB")) for f in frames]

    return run_video_job(source, target, process, batch_size=1, settings=settings, overwrite=overwrite,
                         reporter=reporter)
