"""Encode frames into a video file with PyAV: H.264 (libx264) in MP4 by default, the source's audio alongside.

Pixel format: 4:2:0 (``yuv420p``, what every player decodes) when the frame has even sides, else 4:4:4 (odd sides
cannot be subsampled; fewer players take it). ``crf`` sets the constant-quality level of the encoders that have
one (x264, x265, VP9, SVT-AV1); other encoders use their default bit rate.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from i2i.errors import OutputError, UsageError
from i2i.video.files import VIDEO_FORMATS

if TYPE_CHECKING:
    import numpy as np

    from i2i.video.audio import AudioPlan

CODEC_ALIASES = {"h264": "libx264", "avc": "libx264", "hevc": "libx265", "h265": "libx265", "vp9": "libvpx-vp9",
                 "av1": "libsvtav1"}
CRF_ENCODERS = frozenset({"libx264", "libx265", "libvpx-vp9", "libsvtav1"})


@dataclass(frozen=True)
class EncodeSettings:
    """``codec``: an FFmpeg encoder or an alias (h264, hevc, vp9, av1); ``crf``: its constant-quality level,
    lower is better (18: visually near-lossless for x264, whose own default is 23)."""

    codec: str = "h264"
    crf: int = 18

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 63:
            raise UsageError(f"--crf {self.crf}: must be between 0 and 63 (x264/x265 take 0-51)")

    @property
    def encoder(self) -> str:
        """The FFmpeg encoder's name; :class:`UsageError` when PyAV's FFmpeg has no such encoder."""
        import av

        name = CODEC_ALIASES.get(self.codec.lower(), self.codec)
        try:
            codec = av.codec.Codec(name, "w")
        except (av.codec.codec.UnknownCodecError, ValueError):
            raise UsageError(f"--codec {self.codec}: no such video encoder in PyAV's FFmpeg (try h264, hevc, vp9, "
                             "av1 or mpeg4)") from None
        if codec.type != "video":
            raise UsageError(f"--codec {self.codec}: {name} is not a video encoder")
        return name

    def options(self, encoder: str) -> dict[str, str]:
        if encoder not in CRF_ENCODERS:
            return {}
        extra = {"libvpx-vp9": {"b": "0"}, "libx265": {"x265-params": "log-level=error"}}.get(encoder, {})
        return {"crf": str(min(self.crf, 51) if encoder in ("libx264", "libx265") else self.crf), **extra}


def container_format(path: str | os.PathLike) -> str:
    """FFmpeg's muxer name for ``path``'s extension (:class:`UsageError` for one that is not a video's)."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise UsageError(f"{path}: {suffix or 'no extension'} is not a video container "
                         f"({', '.join(sorted(VIDEO_FORMATS))})")
    return VIDEO_FORMATS[suffix]


def check_encoder(settings: EncodeSettings, container: str, what: str | None = None) -> None:
    """:class:`UsageError` unless ``container`` (an FFmpeg muxer name) takes ``settings``' encoder: checked in
    memory, before any frame is decoded. ``what`` begins the message (default: the ``--codec`` flag)."""
    import io

    import av

    encoder, what = settings.encoder, what or f"--codec {settings.codec}"
    with av.open(io.BytesIO(), mode="w", format=container) as probe:
        try:
            stream = probe.add_stream(encoder, rate=24)
        except ValueError as exc:       # "'webm' format does not support 'libx264' codec"
            raise UsageError(f"{what}: {exc}") from exc
        stream.width = stream.height = 64
        stream.pix_fmt = _pixel_format(encoder, 64, 64)
        try:
            probe.start_encoding()      # the header: Ogg, say, refuses H.264 only here
        except (av.FFmpegError, ValueError) as exc:
            raise UsageError(f"{what}: a {container} file does not take {encoder} "
                             f"({getattr(exc, 'strerror', None) or exc})") from exc


# FFmpeg's AVColorSpace for BT.601 (SMPTE 170M): the matrix swscale converts RGB frames to YUV with by default.
# Untagged, players guess BT.709 for HD sizes and shift the colours slightly.
_BT601 = 6

# Encoders that take only a frame-rate time base (MPEG-1/2), and muxers that store frame counts, not timestamps
# (AVI): their frames are stamped on the 1/fps grid (a variable frame rate is rounded to it).
_FRAME_RATE_ENCODERS = ("mpeg1video", "mpeg2video")
_FRAME_RATE_MUXERS = ("avi",)

# JPEG encoders: they list yuv420p too, but refuse it in limited range.
_FULL_RANGE_ENCODERS = ("mjpeg", "ljpeg")

# Encoders that list 4:4:4 but abort the whole process (heap corruption) on frames with an odd side: refused first.
_ODD_SIDES_ABORT = ("libx265",)


def _pixel_format(encoder: str, width: int, height: int) -> str:
    import av

    formats = [f.name for f in av.codec.Codec(encoder, "w").video_formats or []]
    wanted = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    if wanted == "yuv444p" and encoder in _ODD_SIDES_ABORT:
        raise UsageError(f"{encoder} cannot encode {width}x{height} frames (it fails on odd sides); use h264")
    if encoder in _FULL_RANGE_ENCODERS and "yuvj" + wanted[3:] in formats:    # the same sampling in full range
        return "yuvj" + wanted[3:]
    if not formats or wanted in formats:
        return wanted
    if wanted == "yuv444p":
        raise UsageError(f"{encoder} cannot encode {width}x{height} frames (odd sides need 4:4:4); use h264")
    return formats[0]


class VideoWriter:
    """Write frames (uint8 ``[H, W, 3]`` RGB or ``[H, W]`` grey arrays) to ``path``.

    ``fps``: the frame rate; ``time_base``: give the source's to keep each frame's timestamp (``write(array,
    pts)``, variable frame rates kept), else frame ``i`` is shown at ``i / fps``. ``start``: the source's first
    timestamp in seconds, which becomes the output's 0 for the video and the audio alike (as FFmpeg shifts a clip
    that does not start at 0), so they stay in sync. ``audio_source``: a file whose first audio stream is muxed in
    (:class:`~i2i.video.audio.AudioTrack`); or ``audio_samples``: ``(samples [channels, n] float in [-1, 1],
    rate)`` to encode (:class:`~i2i.video.audio.SampleAudio`).
    ``container``: the muxer (default: from ``path``'s extension; needed when ``path`` is a temporary name);
    ``sample_aspect_ratio``: the source's, for clips of non-square pixels.
    Use as a context manager: closed on success, abandoned (the file left incomplete) on an error.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: Fraction,
                 settings: EncodeSettings = EncodeSettings(), time_base: Fraction | None = None,
                 audio_source: str | os.PathLike | None = None, start: float = 0.0,
                 audio_samples: "tuple[np.ndarray, int] | None" = None, container: str | None = None,
                 audio_plan: "AudioPlan | None" = None, sample_aspect_ratio: Fraction | None = None) -> None:
        import av

        encoder = settings.encoder
        if encoder == "libsvtav1":          # SVT-AV1 prints a 20-line banner at info level; errors only, unless set
            os.environ.setdefault("SVT_LOG", "1")
        fmt = container or container_format(path)
        try:
            self._container = av.open(os.fspath(path), mode="w", format=fmt)
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"{path}: cannot write ({getattr(exc, 'strerror', None) or exc})") from exc
        self.audio = None
        try:
            try:
                self._stream = self._container.add_stream(encoder, rate=Fraction(fps))
            except ValueError as exc:       # "'webm' format does not support 'libx264' codec"
                raise UsageError(f"--codec {settings.codec}: {exc}") from exc
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = _pixel_format(encoder, width, height)
            if self._stream.pix_fmt.startswith("yuv"):     # say which matrix the RGB frames were converted with
                self._stream.codec_context.colorspace = _BT601            # (swscale's default), and the range
                self._stream.codec_context.color_range = 2 if self._stream.pix_fmt.startswith("yuvj") else 1
            self._stream.options = settings.options(encoder)
            if sample_aspect_ratio:                 # non-square pixels: played at the source's shape
                self._stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
            self._grid = time_base is not None and (encoder in _FRAME_RATE_ENCODERS or fmt in _FRAME_RATE_MUXERS)
            if time_base is not None and not self._grid:
                self._stream.time_base = self._stream.codec_context.time_base = time_base
            if audio_source is not None:
                from i2i.video.audio import AudioTrack

                self.audio = AudioTrack(audio_source, self._container, fmt, start, audio_plan)
            elif audio_samples is not None:
                from i2i.video.audio import SampleAudio

                self.audio = SampleAudio(*audio_samples, self._container)
        except BaseException:
            self.abandon()
            raise
        self._fps, self._source_base = Fraction(fps), time_base
        self._time_base = 1 / self._fps if self._grid or time_base is None else time_base
        self._shift = round(start / float(time_base)) if time_base is not None else 0
        self._count, self._last_pts, self._start = 0, None, start

    def write(self, array: "np.ndarray", pts: int | None = None) -> None:
        """Encode one frame; ``pts`` in the ``time_base`` given to the constructor, the source's (None: frame
        count / fps)."""
        import av

        frame = av.VideoFrame.from_ndarray(array, format="rgb24" if array.ndim == 3 else "gray")
        if pts is None:
            pts = round(self._count / self._fps / self._time_base)
        elif self._grid:                    # on the frame-rate grid these encoders and muxers keep time in,
            seconds = float(pts * self._source_base) - self._start     # rounded down: no empty first frame
            pts = math.floor(seconds * float(self._fps) + 1e-6)        # (the audio leads by < 1 frame)
        else:
            pts -= self._shift
        if self._last_pts is not None and pts <= self._last_pts:   # repeated or disordered stamps
            pts = self._last_pts + 1
        frame.pts, frame.time_base = pts, self._time_base
        try:
            packets = self._stream.encode(frame)
        except av.FFmpegError as exc:       # the encoder opens on the first frame: e.g. frames below its minimum
            if self._count:
                raise
            raise UsageError(f"{self._stream.codec_context.name} cannot encode {self._stream.width}x"
                             f"{self._stream.height} frames ({exc}); use h264") from exc
        self._container.mux(packets)
        self._count, self._last_pts = self._count + 1, pts
        if self.audio is not None:
            self.audio.mux_until(float(pts * self._time_base))

    @property
    def frames(self) -> int:
        return self._count

    def close(self) -> None:
        """Flush the encoder, mux the rest of the audio and finish the file."""
        self._container.mux(self._stream.encode(None))
        if self.audio is not None:
            self.audio.finish()
        self._container.close()

    def abandon(self) -> None:
        """Stop without finishing (after an error): release the files; the output is incomplete."""
        for close in ((self.audio.close,) if self.audio is not None else ()) + (self._container.close,):
            try:
                close()
            except Exception:  # noqa: BLE001 - already failing; the first error is the one to report
                pass

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()


def write_video(path: str | os.PathLike, frames: Iterable["np.ndarray"], fps: float | Fraction,
                settings: EncodeSettings = EncodeSettings(), audio: "tuple[np.ndarray, int] | None" = None,
                overwrite: bool = False) -> Path:
    """Write ``frames`` (uint8 ``[H, W, 3]`` RGB or ``[H, W]`` grey arrays, all one size) to ``path``, atomically
    (a temporary name beside it, renamed when complete; an existing ``path`` is refused unless ``overwrite``).
    ``audio``: ``(samples [channels, n] float in [-1, 1], sample rate)`` to encode alongside. Returns ``path``."""
    from i2i.images import atomic_path

    fmt = container_format(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise UsageError(f"{path}: no frames to write")
    fps = Fraction(fps).limit_denominator(1001)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with VideoWriter(tmp, first.shape[1], first.shape[0], fps, settings, audio_samples=audio,
                         container=fmt) as writer:
            writer.write(first)
            for frame in frames:
                writer.write(frame)
    return Path(path)
