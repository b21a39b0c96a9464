"""One video job: decode in a thread, process frames in batches in the caller's thread, encode in a thread.

The three stages are joined by bounded queues (a few batches of frames), so memory stays flat whatever the clip's
length and neither decoding nor encoding waits for the model (PyAV and torch both release the GIL while they work).

The output is written to a temporary name beside the target and renamed into place only when every frame and the
audio are written (:func:`i2i.images.atomic_path`): Ctrl-C, an error or a corrupt input leave no file that looks
complete. A corrupt or truncated input (:class:`~i2i.video.reading.CorruptVideoError`) writes nothing; the error
names the file and the frame where reading stopped.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from i2i.errors import OutputError
from i2i.progress import Reporter
from i2i.video.reading import DecodedFrame, probe_video, read_frames
from i2i.video.writing import EncodeSettings, VideoWriter, check_encoder, container_format

if TYPE_CHECKING:
    import numpy as np

    from i2i.video.audio import AudioPlan
    from i2i.video.reading import VideoInfo

# process(batch of input frames) -> one output frame each; post(input frame, output frame) -> output frame
BatchFn = Callable[[Sequence["np.ndarray"]], Sequence["np.ndarray"]]
PostFn = Callable[["np.ndarray", "np.ndarray"], "np.ndarray"]


@dataclass(frozen=True)
class VideoJobResult:
    """A finished job: ``frames`` written in ``seconds`` (decoding to the renamed file); ``audio``: ``"copied"``,
    ``"re-encoded (aac)"``, ... or None when the input has no audio."""

    input: Path
    output: Path
    frames: int
    seconds: float
    width: int
    height: int
    audio: str | None

    @property
    def fps(self) -> float:
        """Frames processed per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def record(self) -> dict[str, Any]:
        """The ``--json`` record of this job."""
        return {"input": str(self.input), "output": str(self.output), "status": "ok", "frames": self.frames,
                "fps": round(self.fps, 3), "seconds": round(self.seconds, 3), "width": self.width,
                "height": self.height, "audio": self.audio}


class _End:
    """End of a stream of queue items; ``error`` set when the producing stage failed."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


_STOPPED = _End()     # what a stage reads once the job is stopping (another stage failed or was interrupted)


class _Stages:
    """The queues and the stop flag shared by the three stages."""

    def __init__(self, depth: int) -> None:
        self.decoded: queue.Queue = queue.Queue(maxsize=depth)
        self.processed: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()

    def put(self, q: queue.Queue, item: Any) -> bool:
        """Put ``item``, waiting while ``q`` is full; False (dropped) once the job is stopping."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue) -> Any:
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return _STOPPED


def _decode(source: Path, grey: bool, stages: _Stages) -> None:
    try:
        for frame in read_frames(source, grey=grey):
            if not stages.put(stages.decoded, frame):
                return
    except BaseException as exc:  # handed to the caller's thread, which raises it
        stages.put(stages.decoded, _End(exc))
        return
    stages.put(stages.decoded, _End())


def run_video_job(source: str | os.PathLike, target: str | os.PathLike, process: BatchFn, batch_size: int = 4,
                  grey: bool = False, settings: EncodeSettings = EncodeSettings(), post: PostFn | None = None,
                  overwrite: bool = False, reporter: Reporter | None = None) -> VideoJobResult:
    """Decode ``source``, run ``process`` on batches of up to ``batch_size`` frames (uint8 ``[H, W, 3]`` RGB, or
    ``[H, W]`` with ``grey``), pass each output through ``post`` (e.g. a
    :class:`~i2i.video.temporal.TemporalFilter`) and encode it to ``target`` with the source's frame rate,
    timestamps and audio. Progress in frames with ETA on ``reporter``. An existing ``target`` is refused unless
    ``overwrite`` (:class:`~i2i.errors.OutputError`)."""
    from i2i.images import atomic_path

    source, target = Path(source), Path(target)
    reporter = reporter or Reporter.library()
    if not overwrite and target.exists():        # before the input is opened (atomic_path checks again)
        raise OutputError(f"{target}: already exists (pass --overwrite to replace it)")
    fmt = container_format(target)
    info, audio = check_video_output(source, target, settings)
    start = time.perf_counter()
    stages = _Stages(depth=2 * batch_size)
    done: dict[str, Any] = {}
    with atomic_path(target, overwrite=overwrite) as tmp, \
            reporter.progress(info.expected_frames, f"{source.name}: frames") as advance:
        def open_writer(first: "np.ndarray") -> VideoWriter:
            return VideoWriter(tmp, first.shape[1], first.shape[0], info.fps, settings, time_base=info.time_base,
                               audio_source=source if audio else None, start=info.start_time,
                               container=fmt, audio_plan=audio, sample_aspect_ratio=info.sample_aspect_ratio)

        threads = [threading.Thread(target=_decode, args=(source, grey, stages), daemon=True),
                   threading.Thread(target=_encode, args=(open_writer, post, stages, advance, done), daemon=True)]
        for thread in threads:
            thread.start()
        try:
            _process(process, batch_size, stages)
            threads[1].join()
        finally:
            stages.stop.set()
            for thread in threads:       # both stop within a queue timeout once told (the writer is closed)
                thread.join(timeout=10)
        if "error" in done:
            raise done["error"]
    first = done["shape"]
    return VideoJobResult(source, target, done["frames"], time.perf_counter() - start, first[1], first[0],
                          done.get("audio"))


def check_video_output(source: str | os.PathLike, target: str | os.PathLike,
                       settings: EncodeSettings = EncodeSettings(), whole: bool = False,
                       what: str | None = None) -> tuple["VideoInfo", "AudioPlan | None"]:
    """What can be known before any frame is decoded or model loaded: ``source``'s header (``whole``: and its
    packets read to the end, :func:`~i2i.video.reading.check_whole`), that ``target``'s container takes the video
    encoder (``what``: how the message names the choice, default the ``--codec`` flag), and how the audio goes in
    (None: the clip has none). A container that takes neither is a :class:`~i2i.errors.UsageError`."""
    from i2i.errors import UsageError
    from i2i.video.audio import plan_audio, unwritable_audio
    from i2i.video.reading import check_whole

    fmt = container_format(target)
    check_encoder(settings, fmt, what)
    info = check_whole(source) if whole else probe_video(source)
    if not info.audio_codec:
        return info, None
    plan = plan_audio(source, fmt)
    if plan is None:
        raise UsageError(unwritable_audio(source, fmt))
    return info, plan


def _process(process: BatchFn, batch_size: int, stages: _Stages) -> None:
    """The caller's stage: batches from the decoder through ``process`` to the encoder; raises what the decoder
    raised (after handing the encoder an end marker)."""
    ended: _End | None = None
    while ended is None:
        batch: list[DecodedFrame] = []
        while len(batch) < batch_size:
            item = stages.get(stages.decoded)
            if item is _STOPPED:         # the encoder failed: its error is raised by run_video_job
                return
            if isinstance(item, _End):
                ended = item
                break
            batch.append(item)
        if ended is not None and ended.error is not None:
            stages.put(stages.processed, _End(ended.error))
            raise ended.error
        if batch:
            outputs = process([f.array for f in batch])
            for frame, out in zip(batch, outputs):
                if not stages.put(stages.processed, (frame, out)):
                    return
    stages.put(stages.processed, _End())


def _encode(open_writer: Callable[["np.ndarray"], VideoWriter], post: PostFn | None, stages: _Stages,
            advance: Callable[..., None], done: dict[str, Any]) -> None:
    """The encoder's stage: each processed frame through ``post`` into the writer, opened at the first frame;
    the outcome (frame count, size, audio mode, or the error) goes into ``done``."""
    writer: VideoWriter | None = None
    try:
        while True:
            item = stages.get(stages.processed)
            if item is _STOPPED:
                raise InterruptedError("stopped before the end of the clip")
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                break
            frame, out = item
            if post is not None:
                out = post(frame.array, out)
            if writer is None:
                writer = open_writer(out)
                done["shape"] = out.shape
            writer.write(out, frame.pts)
            advance(1)
        if writer is None:
            raise RuntimeError("no frame reached the encoder")
        writer.close()
        done["frames"], done["audio"] = writer.frames, writer.audio.mode if writer.audio else None
    except BaseException as exc:
        done.setdefault("error", exc)
        stages.stop.set()
        if writer is not None:
            writer.abandon()
