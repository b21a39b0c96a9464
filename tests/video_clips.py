"""Tiny video clips for the tests, written with i2i.video.writing (PyAV): a few frames of 32-64 px with motion,
and optionally a 440 Hz tone as the audio track."""

from __future__ import annotations

from fractions import Fraction
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


def av_clip(path: Path, fmt: str | None = None, n: int = 12, fps: int = 12, size: int = 32, start: float = 0.0,
            acodec: str | None = "aac", layout: str = "stereo", audio_seconds: float | None = None,
            vcodec: str = "libx264") -> Path:
    """A clip written with PyAV directly, for containers and audio ``write_video`` does not make: video and audio
    starting at ``start`` seconds, ``audio_seconds`` of a tone (default: as long as the video) in ``acodec`` with
    ``layout`` (a ``"2 channels"``-style name gives an unnamed layout, as PCM AVIs have)."""
    import av

    tb = Fraction(1, fps * 100)
    with av.open(str(path), "w", format=fmt) as c:
        video = c.add_stream(vcodec, rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.time_base = video.codec_context.time_base = tb
        audio = c.add_stream(acodec, rate=48000, layout=layout) if acodec else None
        for i, array in enumerate(moving_frames(n, size, size)):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = round((start + i / fps) / tb), tb
            c.mux(video.encode(frame))
        c.mux(video.encode(None))
        if audio is not None:
            samples, rate = tone(audio_seconds if audio_seconds is not None else n / fps, 48000)
            channels = audio.codec_context.layout.nb_channels
            step, offset = audio.codec_context.frame_size or 1024, round(start * rate)
            for pos in range(0, samples.shape[1], step):
                chunk = np.repeat(samples[:, pos:pos + step], channels, axis=0)
                if audio.codec_context.format.is_planar:
                    frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=audio.codec_context.layout)
                else:
                    frame = av.AudioFrame.from_ndarray((chunk.T.reshape(1, -1) * 32767).astype(np.int16),
                                                       format="s16", layout=audio.codec_context.layout)
                frame.sample_rate, frame.pts, frame.time_base = rate, offset + pos, Fraction(1, rate)
                c.mux(audio.encode(frame))
            c.mux(audio.encode(None))
    return path
