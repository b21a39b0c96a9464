"""Jobs whose first input is a video (``i2i ctrlx --structure clip.mp4``, ``i2i freecontrol --condition
clip.mp4``): each frame is that input of one output frame, generated with the job's ONE seed (so every frame starts
from the same initial noise and a still scene stays still) and written as a video named like the image output but
``.mp4`` (H.264; the source's frame rate, timestamps and audio kept: :func:`i2i.video.diffusion.generate_video`).

The job loop (:func:`i2i.diffusion.jobs.run_jobs`) calls :func:`video_job_names` and :func:`check_video_job` while it
prepares (no model loaded) and :func:`generate_clip` to run one; ``run`` is its :class:`~i2i.diffusion.jobs.JobRun`
(typed ``Any`` here, so that this module does not import the loop that imports it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from i2i.errors import UsageError

if TYPE_CHECKING:
    from PIL import Image

    from i2i.progress import Reporter


def is_video_job(run: Any, job: dict[str, Any]) -> bool:
    """Whether ``job``'s first input (the structure / condition) is a video file."""
    from i2i.video import is_video_file

    primary = run.schema.primary
    return primary is not None and job.get(primary) is not None and is_video_file(job[primary])


def video_job_names(run: Any, job: dict[str, Any], names: list[dict[str, Path]]) -> list[dict[str, Path]]:
    """The one output of a video job: the image output's name with ``.mp4`` (``--out clip.mp4``: that file, for a
    batch of one job). No companion outputs (``--extras``) and one output per job (``--num-images 1``)."""
    from i2i.video import is_video_file

    if job["num_images"] != 1:
        raise UsageError(f"{job[run.schema.primary]}: a video input makes one output video (give --num-images 1)")
    if is_video_file(run.out) and not run.out.is_dir():
        if len(run.jobs) != 1:
            raise UsageError(f"--out {run.out} names one video file, but there are {len(run.jobs)} jobs: "
                             "give a folder")
        return [{"image": run.out}]
    if names[0]["image"] == run.out:             # --out x.png: one image file named, a video would be written
        raise UsageError(f"--out {run.out} names an image file, but {job[run.schema.primary]} is a video: give "
                         f"{run.out.with_suffix('.mp4').name} or a folder")
    return [{"image": names[0]["image"].with_suffix(".mp4")}]


def scored_video(path: str) -> UsageError:
    """The error for a video input with ``--score`` (the scores are of single images)."""
    return UsageError(f"{path}: --score is for image outputs, not videos")


def check_video_job(run: Any, job: dict[str, Any], target: Path) -> None:
    """Refuse what a video job cannot do, and read the clip to its end without decoding it (a clear error for a
    missing, empty, corrupt or truncated clip: :func:`i2i.video.reading.check_whole`) and check that ``target``'s
    container takes H.264 and the clip's audio, before any model is loaded."""
    from i2i.video.pipeline import check_video_output

    source = job[run.schema.primary]
    if run.scorers is not None:
        raise scored_video(source)
    if run.extras:
        raise UsageError(f"{source}: a video input makes one output video; the companion pictures "
                         f"({', '.join(run.extras)}) are for image outputs")
    check_video_output(source, target, whole=True, what=f"--out {target.name} (H.264)")


def generate_clip(run: Any, model: Any, job: dict[str, Any], images: dict[str, "Image.Image"], target: Path,
                  generate: Callable[[Any, dict[str, Any], dict[str, "Image.Image"]], Any],
                  reporter: "Reporter") -> tuple[dict[str, Any], float]:
    """Write ``target``: ``generate(model, job, images)`` with each frame of the job's video as its first image
    (turned into the ``run.preprocess`` map first, if any); returns the fields of the job's ``--json`` record
    (the method's fields of the last frame, and the clip's frames, fps (frames generated per second), size and
    audio) and the seconds it took."""
    from i2i.video.diffusion import generate_video

    primary = run.schema.primary
    size = run.map_size(model) if run.map_size is not None else None
    fields: dict[str, Any] = {}

    def frame_fn(frame: "Image.Image") -> "Image.Image":
        if run.preprocess != "none":
            from i2i.preprocess.maps import condition_map

            frame = condition_map(frame, run.preprocess, size)
        result = generate(model, job, {**images, primary: frame})
        fields.update(result.record)
        return result.images[0]

    clip = generate_video(job[primary], target, frame_fn, overwrite=run.overwrite, reporter=reporter)
    record = clip.record()
    return {**fields, **{k: record[k] for k in ("frames", "fps", "width", "height", "audio")}}, clip.seconds
