"""Probe and decode videos with PyAV; every problem is one :class:`~i2i.errors.InputError` naming the file.

A clip that stops early is caught two ways: FFmpeg's own decoding error, and fewer decoded frames than the container
announces (its frame count, and where there are timestamps a last frame well before its duration's end), which is
how a cut-off Matroska or a damaged MP4 usually shows. Either raises :class:`CorruptVideoError` once the readable
frames are used up; the translation driver then writes nothing (see :mod:`i2i.video.pipeline`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from i2i.errors import InputError

if TYPE_CHECKING:
    import av
    import numpy as np


class CorruptVideoError(InputError):
    """A video whose decoding failed or stopped before its announced end."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says. ``frames``: the container's frame count (None when it keeps none, e.g.
    Matroska); ``duration``: seconds from the video's first timestamp to ``end`` (None if unknown); ``start_time``:
    the container's first timestamp in seconds (the earliest of its streams: where the output's time 0 goes);
    ``time_base``: the unit of the video stream's timestamps; ``end``: where the video should end, in seconds;
    ``end_of_file``: True when ``end`` is the container's (all streams: a longer audio track moves it), False when
    it is the video stream's own."""

    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int | None
    duration: float | None
    codec: str
    audio_codec: str | None
    start_time: float
    time_base: Fraction | None = None
    end: float | None = None
    end_of_file: bool = False
    sample_aspect_ratio: Fraction | None = None      # of non-square pixels (DV, HDV, DVD); None for square ones

    @property
    def expected_frames(self) -> int | None:
        """The frame count to expect: the header's, else duration x frame rate, rounded down (None if neither is
        known; an estimate when the container's duration covers a longer audio stream)."""
        if self.frames:
            return self.frames
        if self.duration and self.fps:       # the duration spans the last frame's display time too
            return max(1, int(self.duration * float(self.fps) + 1e-3))
        return None


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: its ``index`` (0-based, presentation order), timestamp ``pts`` in the video stream's
    time base (None when the file has none) and pixels ``array`` (uint8 ``[H, W, 3]`` RGB or ``[H, W]`` grey)."""

    index: int
    pts: int | None
    array: "np.ndarray"


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words for ``exc`` (its ``strerror``, without the file name PyAV appends)."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@contextmanager
def open_video(path: str | os.PathLike) -> Iterator["av.container.InputContainer"]:
    """Open ``path`` for reading with its first video stream checked; the container is closed after."""
    import av

    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a video")
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file (0 bytes)")
    try:
        container = av.open(os.fspath(p), mode="r")
    except PermissionError as exc:
        raise InputError(f"{p}: permission denied") from exc
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{p}: not a readable video ({_reason(exc)}; truncated, corrupt or not a video)") from exc
    try:
        if not container.streams.video:
            raise InputError(f"{p}: has no video stream")
        yield container
    finally:
        container.close()


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """The :class:`VideoInfo` of ``path`` (its first video stream, first audio stream)."""
    with open_video(path) as container:
        return _info(Path(path), container)


def _info(path: Path, container: "av.container.InputContainer") -> VideoInfo:
    fmt = container.format.name
    if fmt == "image2" or fmt.endswith("_pipe"):        # FFmpeg's still-image readers (png_pipe, jpeg_pipe, ...)
        raise InputError(f"{path}: a still image ({fmt.removesuffix('_pipe')}), not a video; give it its image "
                         "extension to use it as an image")
    stream = container.streams.video[0]
    fps = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not fps:
        raise InputError(f"{path}: the video stream has no frame rate")
    audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    start = (container.start_time or 0) / 1_000_000
    video_start = float(stream.start_time * stream.time_base) if stream.start_time is not None and \
        stream.time_base else start
    end, end_of_file = None, False
    if stream.duration and stream.time_base:          # the video stream's own span (MP4, AVI, ...)
        end = video_start + float(stream.duration * stream.time_base)
    elif container.duration:                          # the whole file's (Matroska, WebM, MPEG-TS)
        duration = container.duration / 1_000_000
        # FFmpeg's Matroska muxer stores the end timestamp as the duration when a file does not start at 0; read
        # either way, the earlier end is taken (a check of it can only be more lenient)
        end, end_of_file = min(duration, start + duration), True
    width, height = stream.codec_context.width, stream.codec_context.height
    if not width or not height:
        raise InputError(f"{path}: the video stream has no frame size")
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return VideoInfo(path, width, height, Fraction(fps), stream.frames or None,
                     None if end is None else max(end - video_start, 0.0), stream.codec_context.name, audio, start,
                     Fraction(stream.time_base) if stream.time_base else None, end, end_of_file,
                     Fraction(sar) if sar and sar != 1 else None)


def check_whole(path: str | os.PathLike) -> VideoInfo:
    """The :class:`VideoInfo` of ``path``, after reading (not decoding) its video packets to the end:
    :class:`CorruptVideoError` for a file that ends before its header says, as :func:`read_frames` would find
    once every frame was decoded, but in a fraction of the time (for jobs that spend minutes on each frame)."""
    import av

    p = Path(path)
    with open_video(p) as container:
        info = _info(p, container)
        count, first_time, last_time = 0, None, None
        try:
            for packet in container.demux(container.streams.video[0]):
                if packet.size == 0:
                    continue
                count += 1
                if packet.pts is not None and packet.time_base:
                    t = float(packet.pts * packet.time_base)
                    first_time = t if first_time is None else min(first_time, t)
                    last_time = t if last_time is None else max(last_time, t)
        except (av.FFmpegError, ValueError) as exc:
            raise _stopped(p, info, count, "reading", exc) from exc
    _check_end(p, info, count, first_time, last_time, "read")
    return info


def read_frames(path: str | os.PathLike, grey: bool = False) -> Iterator[DecodedFrame]:
    """Decode every frame of ``path`` in presentation order as RGB (``grey``: single-channel) arrays, all at the
    stream's size.

    Raises :class:`CorruptVideoError` after the last readable frame when decoding fails or the file ends early:
    more than one frame short of the header's frame count and (where the stream has timestamps) a last frame more
    than two frame intervals, and 1 % of the duration, before the announced end.
    """
    import av

    p = Path(path)
    with open_video(p) as container:
        info = _info(p, container)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fmt = "gray" if grey else "rgb24"
        count, first_time, last_time = 0, None, None
        try:
            for frame in container.decode(stream):
                # at the stream's size: a mid-stream size change is scaled back to it
                if any(c.is_alpha for c in frame.format.components):     # transparency on white, as for images
                    array = _on_white(frame.to_ndarray(format="rgba", width=info.width, height=info.height), grey)
                else:
                    array = frame.to_ndarray(format=fmt, width=info.width, height=info.height)
                yield DecodedFrame(count, frame.pts, array)
                count, last_time = count + 1, frame.time if frame.time is not None else last_time
                first_time = last_time if first_time is None else first_time
        except (av.FFmpegError, ValueError) as exc:
            raise _stopped(p, info, count, "decoding", exc) from exc
        _check_end(p, info, count, first_time, last_time, "decoded")


def _stopped(path: Path, info: VideoInfo, count: int, doing: str, exc: BaseException) -> CorruptVideoError:
    return CorruptVideoError(f"{path}: corrupt or truncated video: {doing} failed after frame {count}{_of(info)} "
                             f"({_reason(exc)})")


def _check_end(path: Path, info: VideoInfo, count: int, first_time: float | None, last_time: float | None,
               done: str) -> None:
    """:class:`CorruptVideoError` when no frame could be ``done`` or the video ends before its header says (and,
    where the header's end is the whole file's, no other stream reaches it either)."""
    if count == 0:
        raise CorruptVideoError(f"{path}: no frame could be {done}")
    if _ends_early(info, count, first_time, last_time) and not (info.end_of_file and _file_reaches_end(path, info)):
        raise CorruptVideoError(f"{path}: corrupt or truncated video: it ends after frame {count}{_of(info)}")


def _on_white(rgba: "np.ndarray", grey: bool) -> "np.ndarray":
    """An RGBA frame composited on white (as :func:`i2i.images.convert_image` does an image), RGB or grey."""
    import numpy as np
    from PIL import Image

    alpha = rgba[..., 3:].astype(np.uint16)
    rgb = ((rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.asarray(Image.fromarray(rgb).convert("L")) if grey else rgb


def _ends_early(info: VideoInfo, count: int, first_time: float | None, last_time: float | None) -> bool:
    """Fewer frames than the header's count and, where the stream has timestamps, a last frame well before the
    announced end. Both must say so: an AVI with a fine time base (1/1000) counts time-base ticks as frames."""
    timed = info.end is not None and last_time is not None and info.duration is not None
    if info.frames and (count >= info.frames - 1 or not timed):
        return count < info.frames - 1
    if not timed:
        return False
    interval = 1 / float(info.fps)
    if count > 1 and first_time is not None:          # the frames' own spacing, when the stream's rate is a tick
        interval = max(interval, (last_time - first_time) / (count - 1))
    return last_time + interval < info.end - max(2 * interval, 0.01 * info.duration)


def _file_reaches_end(path: Path, info: VideoInfo) -> bool:
    """Whether some stream of ``path`` (a longer audio track, say) reaches ``info.end``: then the file is whole
    and its video only shorter than the container's duration. Packets are read, not decoded."""
    import av

    last = None
    try:
        with av.open(os.fspath(path), mode="r") as container:
            for packet in container.demux():
                if packet.pts is not None and packet.time_base:
                    t = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    last = t if last is None else max(last, t)
    except (av.FFmpegError, OSError, ValueError):
        return False
    return last is not None and last >= info.end - max(0.05, 0.01 * (info.duration or 0))


def _of(info: VideoInfo) -> str:
    expected = info.expected_frames
    return "" if not expected else f" of {expected}" if info.frames else f" of about {expected}"
