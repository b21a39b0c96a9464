"""The audio of a translated clip: the source's first audio stream, muxed beside the new video in time order.

The packets are copied unchanged when the output container takes the codec (tried in memory before anything is
written: header, a packet, trailer, read back); otherwise the audio is decoded and re-encoded with the first encoder
the container takes (AAC; Opus for WebM; MP2 for MPEG program streams), in the source's channel layout where the
encoder takes it (a layout the file does not name, as in PCM AVIs, is FFmpeg's default for its channel count). Audio
is interleaved with the video as it is written (:meth:`AudioTrack.mux_until`), so nothing waits in memory for the
end of the clip. """

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import av
    import numpy as np


# Audio encoders tried, in order, when the source's codec does not fit the output container (AAC where taken; Opus
# for WebM; MP2 for MPEG program streams; ...), and the layout FFmpeg gives N channels when a file names none.
REENCODERS = ("aac", "libopus", "mp2", "libmp3lame", "ac3")
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


@dataclass(frozen=True)
class AudioPlan:
    """How a source's first audio stream goes into a container: ``mode`` ``"copied"`` (packets as they are) or
    ``"re-encoded (<codec>)"`` with the encoder's ``codec``, ``layout`` and ``rate``."""

    mode: str
    codec: str | None = None
    layout: str | None = None
    rate: int | None = None


def plan_audio(source: str | os.PathLike, container_format: str) -> AudioPlan | None:
    """How ``source``'s first audio stream can be written into a ``container_format`` file, tried in memory
    before anything is written: its packets copied when the container takes them whole (header, a packet and
    trailer written, and read back as that codec), else the first encoder, channel layout and rate of
    :data:`REENCODERS` it takes. None when nothing works."""
    import av

    with av.open(os.fspath(Path(source)), mode="r") as src:
        stream = src.streams.audio[0]
        packet = next((p for p in src.demux(stream) if p.size), None)
        if packet is not None and _copy_works(stream, packet, container_format):
            return AudioPlan("copied")
        ctx = stream.codec_context
        channels = ctx.layout.nb_channels if ctx.layout else ctx.channels
    named = ctx.layout.name if ctx.layout and "channels" not in ctx.layout.name else None
    return reencode_plan(container_format, (named, DEFAULT_LAYOUTS.get(channels), "stereo"), ctx.sample_rate)


def reencode_plan(container_format: str, layouts: tuple[str | None, ...], rate: int,
                  mode: str = "re-encoded") -> AudioPlan | None:
    """The first of :data:`REENCODERS`, ``layouts`` (in order; None skipped) and ``rate`` (else 48 kHz) that a
    ``container_format`` file takes, tried in memory; None when none is."""
    for codec in REENCODERS:
        for layout in dict.fromkeys(x for x in layouts if x):
            for r in dict.fromkeys((rate, 48000)):
                if _encode_works(codec, layout, r, container_format):
                    return AudioPlan(f"{mode} ({codec})", codec, layout, r)
    return None


def unwritable_audio(source: str | os.PathLike, container_format: str) -> str:
    """The usage error's text for a clip whose audio no encoder here writes into ``container_format``."""
    return (f"{source}: its audio cannot be written into a {container_format} file (neither copied nor re-encoded "
            f"with {', '.join(REENCODERS)}); choose another --out extension, e.g. .mp4 or .mkv")


def _copy_works(stream: "av.audio.stream.AudioStream", packet: "av.Packet", container_format: str) -> bool:
    import av

    buffer = io.BytesIO()
    try:
        with av.open(buffer, mode="w", format=container_format) as probe:
            out = probe.add_stream_from_template(stream)
            probe.start_encoding()
            packet.stream = out
            probe.mux(packet)
        buffer.seek(0)
        with av.open(buffer, mode="r") as back:      # a container may write what it cannot hold as data
            return any(s.codec_context.name == stream.codec_context.name for s in back.streams.audio)
    except (av.FFmpegError, ValueError, OSError):
        return False


def _encode_works(codec: str, layout: str, rate: int, container_format: str) -> bool:
    import av
    import numpy as np

    try:
        with av.open(io.BytesIO(), mode="w", format=container_format) as probe:
            out = probe.add_stream(codec, rate=rate, layout=layout)
            probe.start_encoding()
            size = out.codec_context.frame_size or 1024
            channels = av.AudioLayout(layout).nb_channels
            frame = av.AudioFrame.from_ndarray(np.zeros((1, size * channels), np.int16), format="s16",
                                               layout=layout)
            frame.sample_rate, frame.pts = rate, 0
            probe.mux(out.encode(frame))
            probe.mux(out.encode(None))
    except (av.FFmpegError, ValueError, OSError):
        return False
    return True


class AudioTrack:
    """The first audio stream of ``source`` muxed into ``output`` as ``plan`` says (:func:`plan_audio`; None:
    planned here), timestamps shifted by ``-offset`` seconds (the clip's start, the output's 0), so audio and
    video stay in sync. ``mode`` says what happened: ``"copied"`` or ``"re-encoded (<codec>)"``. Use
    :meth:`mux_until` as video is written and :meth:`finish` at the end."""

    def __init__(self, source: str | os.PathLike, output: "av.container.OutputContainer", container_format: str,
                 offset: float = 0.0, plan: AudioPlan | None = None) -> None:
        import av

        from i2i.errors import UsageError

        plan = plan or plan_audio(source, container_format)
        if plan is None:
            raise UsageError(unwritable_audio(source, container_format))
        self._src = av.open(os.fspath(Path(source)), mode="r")
        self._in = self._src.streams.audio[0]
        self._output, self._offset, self.mode = output, offset, plan.mode
        if plan.mode == "copied":
            self._out = output.add_stream_from_template(self._in)
            self._items: Iterator[Any] = self._packets()
        else:
            self._out = output.add_stream(plan.codec, rate=plan.rate, layout=plan.layout)
            self._items = self._frames()
        self._next: Any = next(self._items, None)

    def _packets(self) -> Iterator[tuple[float, "av.Packet"]]:
        """``(output time in seconds, packet)``, timestamps shifted to the output's start."""
        shift = round(self._offset / self._in.time_base) if self._in.time_base else 0
        for packet in self._src.demux(self._in):
            if packet.size == 0:        # the demuxer's end-of-stream marker
                continue
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            ts = packet.pts if packet.pts is not None else packet.dts
            yield (float(ts * packet.time_base) if ts is not None else float("-inf")), packet

    def _frames(self) -> Iterator[tuple[float, "av.AudioFrame"]]:
        """``(output time in seconds, frame)``, timestamps in samples from the output's start."""
        for frame in self._src.decode(self._in):
            seconds = float(frame.time) - self._offset if frame.time is not None else float("-inf")
            frame.pts = max(0, round(seconds * frame.sample_rate)) if frame.time is not None else None
            frame.time_base = Fraction(1, frame.sample_rate)
            yield seconds, frame

    def mux_until(self, seconds: float | None) -> None:
        """Mux the source's audio up to ``seconds`` of the output's time (None: all of what is left)."""
        while self._next is not None and (seconds is None or self._next[0] <= seconds):
            (_, item), self._next = self._next, next(self._items, None)
            if self.mode == "copied":
                item.stream = self._out
                self._output.mux(item)
            else:
                self._output.mux(self._out.encode(item))

    def finish(self) -> None:
        """Mux what is left, flush the encoder (if re-encoding) and close the source."""
        self.mux_until(None)
        if self.mode != "copied":
            self._output.mux(self._out.encode(None))
        self.close()

    def close(self) -> None:
        self._src.close()


class SampleAudio:
    """Raw samples (float ``[channels, n]`` in [-1, 1], 1 or 2 channels, at ``rate`` Hz) encoded into ``output``
    with the first encoder it takes (:func:`reencode_plan`: AAC, Opus for WebM, ...), interleaved with the video
    like :class:`AudioTrack`."""

    def __init__(self, samples: "np.ndarray", rate: int, output: "av.container.OutputContainer") -> None:
        import numpy as np

        self._samples = np.ascontiguousarray(np.atleast_2d(samples), dtype=np.float32)
        if self._samples.shape[0] not in (1, 2):
            raise ValueError(f"audio samples must be [channels, n] with 1 or 2 channels, not {samples.shape}")
        from i2i.errors import UsageError

        layout = "mono" if self._samples.shape[0] == 1 else "stereo"
        plan = reencode_plan(output.format.name, (layout,), rate, mode="encoded")
        if plan is None:
            raise UsageError(f"a {output.format.name} file takes none of the audio encoders {', '.join(REENCODERS)}")
        self.mode, self._rate, self._pos, self._output, self._layout = plan.mode, rate, 0, output, layout
        self._out = output.add_stream(plan.codec, rate=plan.rate, layout=layout)

    def mux_until(self, seconds: float | None) -> None:
        import av

        n = self._samples.shape[1]
        end = n if seconds is None else min(n, round(seconds * self._rate) + 1)
        for start in range(self._pos, end, 4096):
            frame = av.AudioFrame.from_ndarray(self._samples[:, start:min(start + 4096, end)], format="fltp",
                                               layout=self._layout)
            frame.sample_rate, frame.pts, frame.time_base = self._rate, start, Fraction(1, self._rate)
            self._output.mux(self._out.encode(frame))
        self._pos = max(self._pos, end)

    def finish(self) -> None:
        self.mux_until(None)
        self._output.mux(self._out.encode(None))

    def close(self) -> None:
        pass
