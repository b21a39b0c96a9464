"""The audio of a translated clip: the source's first audio stream, muxed beside the new video in time order.

The packets are copied unchanged when the output container takes the codec (FFmpeg's muxer is asked, in memory,
before anything is written); otherwise the audio is decoded and re-encoded to AAC (Opus for WebM, which takes no
AAC). Audio is interleaved with the video as it is written (:meth:`AudioTrack.mux_until`), so nothing waits in
memory for the end of the clip.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import av
    import numpy as np


def _copy_accepted(stream: "av.audio.stream.AudioStream", container_format: str) -> bool:
    """Whether a ``container_format`` file takes ``stream``'s packets as they are (its header can be written)."""
    import av

    try:
        with av.open(io.BytesIO(), mode="w", format=container_format) as probe:
            probe.add_stream_from_template(stream)
            probe.start_encoding()
    except (av.FFmpegError, ValueError):
        return False
    return True


def reencode_codec(output: "av.container.OutputContainer") -> str:
    """The audio encoder used when the source's codec does not fit ``output``: AAC, or Opus where AAC is not
    taken (WebM)."""
    return "aac" if "aac" in output.supported_codecs else "libopus"


class AudioTrack:
    """The first audio stream of ``source`` muxed into ``output``, timestamps shifted by ``-offset`` seconds (the
    video's start), so audio and video stay in sync. ``mode`` says what happened: ``"copied"`` or
    ``"re-encoded (<codec>)"``. Use :meth:`mux_until` as video is written and :meth:`finish` at the end."""

    def __init__(self, source: str | os.PathLike, output: "av.container.OutputContainer", container_format: str,
                 offset: float = 0.0) -> None:
        import av

        self._src = av.open(os.fspath(Path(source)), mode="r")
        self._in = self._src.streams.audio[0]
        self._output, self._offset = output, offset
        if _copy_accepted(self._in, container_format):
            self.mode = "copied"
            self._out = output.add_stream_from_template(self._in)
            self._items: Iterator[Any] = self._packets()
        else:
            codec = reencode_codec(output)
            self.mode = f"re-encoded ({codec})"
            rate = self._in.codec_context.sample_rate
            rate = rate if codec == "aac" else 48000          # Opus encodes at 48 kHz only
            self._out = output.add_stream(codec, rate=rate, layout=self._in.codec_context.layout.name)
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
    as AAC (Opus for WebM), interleaved with the video like :class:`AudioTrack`."""

    def __init__(self, samples: "np.ndarray", rate: int, output: "av.container.OutputContainer") -> None:
        import numpy as np

        self._samples = np.ascontiguousarray(np.atleast_2d(samples), dtype=np.float32)
        if self._samples.shape[0] not in (1, 2):
            raise ValueError(f"audio samples must be [channels, n] with 1 or 2 channels, not {samples.shape}")
        codec = reencode_codec(output)
        self.mode = f"encoded ({codec})"
        self._rate, self._pos, self._output = rate, 0, output
        self._layout = "mono" if self._samples.shape[0] == 1 else "stereo"
        self._out = output.add_stream(codec, rate=rate if codec == "aac" else 48000, layout=self._layout)

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
