"""Tiny video clips for the tests, written with i2i.video.writing (PyAV): a few frames of 32-64 px with motion,
and optionally a 440 Hz tone as the audio track."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from i2i.video.writing import EncodeSettings, write_video


def moving_frames(n: int = 6, width: int = 48, height: int = 32, step: int = 2) -> list[np.ndarray]:
    """``n`` RGB frames: a smooth gradient background with a red block moving ``step`` px right per frame."""
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1),
                           np.full_like(xx, 128)], -1).astype(np.uint8)
    frames = []
    for i in range(n):
        frame = background.copy()
        x0 = (4 + i * step) % max(1, width - 12)
        frame[height // 4:height // 4 + 10, x0:x0 + 10] = (220, 30, 30)
        frames.append(frame)
    return frames


def tone(seconds: float, rate: int = 16000, hz: float = 440.0) -> tuple[np.ndarray, int]:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t))[None].astype(np.float32), rate


def make_clip(path: Path, n: int = 6, width: int = 48, height: int = 32, fps: float = 12, audio: bool = True,
              codec: str = "h264") -> Path:
    frames = moving_frames(n, width, height)
    return write_video(path, frames, fps, EncodeSettings(codec, 18), audio=tone(n / fps) if audio else None)
