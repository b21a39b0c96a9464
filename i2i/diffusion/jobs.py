"""Generation jobs shared by every diffusion method: a job is a prompt, its input images and options, read from
flags or a JSONL file; each job gets an index, a seed and an output name that depends only on the job, so that a
batch sharded under ``accelerate launch`` (or torchrun: ``RANK`` / ``WORLD_SIZE``, or ``--shard K/N``: see
:mod:`i2i.shard`) writes the same files as one process. :func:`run_jobs` is the loop: shard, refuse (or with
``skip_existing`` pass over) existing outputs and read every input *before* the model is loaded, then generate, save
and report one JSON record per image (:func:`result_record`). A job whose first input is a video makes a video,
frame by frame with one seed (:mod:`i2i.diffusion.video_jobs`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from i2i.errors import I2IError, InputError, OutputError, UsageError, batch_failure
from i2i.images import check_file_name, stops_the_batch
from i2i.seeds import check_seed
from i2i.text import slug

if TYPE_CHECKING:
    from PIL import Image

    from i2i.progress import Reporter
    from i2i.shard import Shard
    from i2i.summary import BatchSummary


@dataclass(frozen=True)
class JobFlag:
    """How a job key reads on the command line: ``help``, a one-letter ``short`` name, the help ``panel`` (None:
    the inputs' panel). The flag itself is ``--<key>`` with dashes for underscores."""

    help: str
    short: str | None = None
    panel: str | None = None


@dataclass(frozen=True)
class JobSchema:
    """What a method's jobs hold. ``images``: keys holding image paths, the first one required (it names the
    outputs and pairs with ``--prompt``), the others optional; ``options``: other keys a job may set (text, unless
    the method's config has a field of that name, whose flag and value they take); ``extras``: companion outputs a
    method can save beside each image as ``NAME_<extra>.png``; ``flags``: the command line's flag of an image or
    text key (every such key has one: ``--<key>``, with this help if declared, else a generic one)."""

    images: tuple[str, ...]
    options: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    flags: dict[str, JobFlag] = field(default_factory=dict, compare=False, hash=False)

    @property
    def primary(self) -> str | None:
        """The required image key (None for a method without input images, e.g. plain sampling)."""
        return self.images[0] if self.images else None

    @property
    def keys(self) -> frozenset[str]:
        return frozenset({"prompt", "seed", "num_images", "name", *self.images, *self.options})


@dataclass
class JobResult:
    """What a method returns for one job: ``images`` (one per ``num_images``), ``extras`` (name -> one image per
    ``num_images``, for the companions asked for) and ``record``: fields added to each image's JSON record."""

    images: list["Image.Image"]
    extras: dict[str, list["Image.Image"]] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def _resolve(path: str, folder: Path) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else folder / p)


def read_jobs(path: Path, schema: JobSchema) -> list[dict[str, Any]]:
    """Jobs of a JSONL file: one JSON object per line with ``prompt`` and the schema's first image key, and
    optionally its other keys (image paths relative to the job file's folder). Blank lines and lines starting with
    # are skipped."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()     # a byte-order mark (Notepad) is allowed
    except OSError as exc:
        raise InputError(f"{path}: cannot read the job file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a job file (not UTF-8 text: {exc.reason} at byte {exc.start})") from exc
    primary = schema.primary
    required = " and ".join(f'"{key}"' for key in ("prompt", primary) if key)
    jobs = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            job = json.loads(line, object_pairs_hook=_no_repeated_keys)
        except _RepeatedKey as exc:
            raise UsageError(f"{path}:{number}: the key \"{exc}\" is given twice (which one is meant?)") from exc
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: not valid JSON ({exc})") from exc
        if not isinstance(job, dict) or "prompt" not in job or (primary and primary not in job):
            raise UsageError(f"{path}:{number}: each job needs {required}")
        unknown = set(job) - schema.keys
        if unknown:
            raise UsageError(f"{path}:{number}: unknown key(s) {', '.join(sorted(unknown))} "
                             f"(allowed: {', '.join(sorted(schema.keys))})")
        for key in schema.images:
            if isinstance(job.get(key), str):          # other types are refused by build_jobs
                job[key] = _resolve(job[key], path.parent)
        jobs.append(job)
    return jobs


class _RepeatedKey(ValueError):
    """A JSON object with a key given twice (valid JSON, but the last value would win silently)."""


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    repeated = next((k for k in keys if keys.count(k) > 1), None)
    if repeated is not None:
        raise _RepeatedKey(repeated)
    return dict(pairs)


def _flag_jobs(schema: JobSchema, prompts: list[str], images: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Jobs from repeated flags: ``--prompt`` paired in order with the first image flag; any list may be given
    once for all."""
    primary = schema.primary
    firsts = images.get(primary) or [] if primary else prompts
    if not prompts and not any(images.values()):
        return []
    if not prompts or not firsts:
        raise UsageError(f"give both --prompt and --{primary} (or a --jobs file)")
    lists = {"prompt": prompts, **{k: v for k, v in images.items() if v}}
    n = max(len(v) for v in lists.values())
    for key, values in lists.items():
        if len(values) not in (1, n):
            counts = ", ".join(f"{len(v)} --{k}" for k, v in lists.items())
            raise UsageError(f"{counts}: give as many of each, or one of them once")
    return [{k: v[i if len(v) > 1 else 0] for k, v in lists.items()} for i in range(n)]


def build_jobs(schema: JobSchema, prompts: list[str], images: dict[str, list[str]], jobs_file: Path | None,
               defaults: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """All jobs in order (from the flags, then the job file), each with its index, seed and output name; unset
    keys take ``defaults``."""
    seed = check_seed(seed)
    jobs = _flag_jobs(schema, prompts, images)
    if jobs_file is not None:
        jobs.extend(read_jobs(jobs_file, schema))
    if not jobs:
        what = f"--prompt and --{schema.primary}" if schema.primary else "--prompt"
        raise UsageError(f"nothing to do: give {what}, or --jobs FILE.jsonl")
    primary = schema.primary
    for index, job in enumerate(jobs):
        if not str(job["prompt"]).strip():
            raise UsageError(f"the prompt is empty (job {index})")
        for key, value in defaults.items():
            job.setdefault(key, value)
        for key in schema.images:
            job.setdefault(key, None)
        _check_types(job, index, schema, defaults)
        _check_text(job, index, schema)
        empty = next((key for key in schema.images if job[key] is not None and not job[key].strip()), None)
        if empty is not None:                      # Path("") is the current folder: never meant
            raise UsageError(f"the {empty} image path is empty (job {index})")
        job["index"] = index
        job.setdefault("seed", seed + index)
        for key in ("seed", "num_images"):          # (true and false are ints to Python, not to a user)
            if not isinstance(job[key], int) or isinstance(job[key], bool):
                raise UsageError(f"job {index}: \"{key}\" must be a whole number (got {json.dumps(job[key])})")
        if job["num_images"] < 1:
            raise UsageError(f"job {index}: \"num_images\" must be at least 1 (got {job['num_images']})")
        check_seed(job["seed"], f"job {index}: the seed")
        stem = f"{slug(Path(job[primary]).stem, 24)}-" if primary else ""
        job.setdefault("name", f"{index:03d}-{stem}{slug(job['prompt'])}")
        if isinstance(job["name"], str) and job["name"].lower().endswith(".png"):
            job["name"] = job["name"][:-4]          # "name": "cat.png" writes cat.png, not cat.png.png
        check_file_name(job["name"], f"job {index}: the name")
    _check_unique_names(jobs)
    return jobs


def _check_types(job: dict[str, Any], index: int, schema: JobSchema, defaults: dict[str, Any]) -> None:
    """A :class:`UsageError` for a job value of the wrong JSON type: the prompt, name and image paths are strings
    (an optional image or text may be null), an option whose default is true/false must be true or false (the
    string "false" would otherwise read as true)."""
    for key, value in job.items():
        if key in ("seed", "num_images"):
            continue                                   # integers, checked with their ranges below
        if isinstance(defaults.get(key), bool):
            ok, wanted = isinstance(value, bool), "true or false"
        elif key in ("prompt", "name") or key == schema.primary:
            ok, wanted = isinstance(value, str), "a string"
        else:
            ok, wanted = value is None or isinstance(value, str), "a string or null"
        if not ok:
            raise UsageError(f"job {index}: \"{key}\" must be {wanted} (got {json.dumps(value)})")


def _check_text(job: dict[str, Any], index: int, schema: JobSchema) -> None:
    """A :class:`UsageError` for a prompt (or other text) that is not valid Unicode: lone surrogates, from a
    non-UTF-8 shell argument (Python keeps its bytes as U+DC80..U+DCFF) or a JSON ``\\udcff`` escape, which the
    tokenizer cannot take. Image paths may hold them (file names are bytes)."""
    for key, value in job.items():
        if key in schema.images or not isinstance(value, str):
            continue
        at = next((i for i, ch in enumerate(value) if 0xD800 <= ord(ch) <= 0xDFFF), None)
        if at is not None:
            shown = value.encode("utf-8", "replace").decode("utf-8")
            raise UsageError(f"job {index}: the {key} \"{shown}\" is not valid UTF-8 text (a lone surrogate, "
                             f"U+{ord(value[at]):04X}, at character {at + 1}); write it in UTF-8 (in a shell: a "
                             "UTF-8 locale such as LANG=C.UTF-8)")


def _check_unique_names(jobs: list[dict[str, Any]]) -> None:
    """No two jobs may write the same file (two jobs named alike): a :class:`UsageError` before any model loads."""
    seen: dict[str, int] = {}
    for job in jobs:
        for entry in output_names(job, Path()):
            stem = entry["image"].stem
            if stem in seen:
                raise UsageError(f"jobs {seen[stem]} and {job['index']} would both write {stem}.png: give them "
                                 "different names")
            seen[stem] = job["index"]


def output_names(job: dict[str, Any], out: Path, one_file: bool = False,
                 extras: tuple[str, ...] = ()) -> list[dict[str, Path]]:
    """Per image of ``job``: ``{"image": path, extra: NAME_<extra>.png, ...}``; with ``one_file``, ``out`` is the
    one image."""
    if one_file:
        return [{"image": out, **{e: out.with_name(f"{out.stem}_{e}{out.suffix}") for e in extras}}]
    n = job["num_images"]
    stems = [job["name"]] if n == 1 else [f"{job['name']}-{k}" for k in range(n)]
    return [{"image": out / f"{s}.png", **{e: out / f"{s}_{e}.png" for e in extras}} for s in stems]


def existing_output(names: list[dict[str, Path]]) -> Path | None:
    """The first of ``names``' paths that exists, or None."""
    return next((p for entry in names for p in entry.values() if p.exists()), None)


def result_record(job: dict[str, Any], schema: JobSchema, paths: dict[str, Path], seconds: float,
                  extra: dict[str, Any], status: str = "ok") -> dict[str, Any]:
    """The JSON record of one image (``--json``): the job, its status (``ok``: written; ``skipped``: kept from an
    earlier run, with ``--skip-existing``), its inputs, the files and ``extra`` (the method's fields). Every method
    builds its records here, so a new field (a score) is added once."""
    record: dict[str, Any] = {"job": job["index"], "status": status, "prompt": job["prompt"]}
    record.update({key: job.get(key) for key in schema.images})
    record.update({"seed": job["seed"], "image": str(paths["image"])})
    record.update({e: (str(paths[e]) if e in paths else None) for e in schema.extras})
    record.update(extra)
    record["seconds"] = round(seconds, 3)
    return record


@dataclass
class JobRun:
    """One batch: the jobs, where they go, and how. ``extras``: the companion outputs asked for; ``preprocess``: the
    condition map (:func:`i2i.preprocess.condition_map` kind) the first image of each job is turned into, made at
    the long side ``map_size(model)`` returns for the loaded model (None, or no ``map_size``: the image's size);
    ``scorers`` (:func:`i2i.metrics.score.load_scorers`): add the structure distance to the first image input and
    the CLIP score to each record."""

    schema: JobSchema
    jobs: list[dict[str, Any]]
    out: Path
    overwrite: bool = False
    extras: tuple[str, ...] = ()
    preprocess: str = "none"
    map_size: Callable[[Any], int | None] | None = None
    scorers: Any = None
    skip_existing: bool = False       # a job whose outputs all exist is done: counted as skipped
    shard: str | None = None          # ``--shard K/N`` (:func:`i2i.shard.current_shard`)
    report_summary: bool = False      # print the summary line and its JSON record (``kind: summary``) at the end
    command: str = "jobs"             # the summary's command name, e.g. freecontrol

    def __post_init__(self) -> None:
        from i2i.images import check_write_mode

        check_write_mode(self.overwrite, self.skip_existing)

    def share(self) -> tuple["Shard", list[dict[str, Any]]]:
        """This process's share of the jobs (:mod:`i2i.shard`)."""
        from i2i.shard import current_shard

        part = current_shard(self.shard)
        return part, part.take(self.jobs)


def _fail(batch_jobs: int, failures: list, name: str, exc: I2IError, reporter: "Reporter") -> None:
    """Record a failed job (reported, the rest go on), or raise its error when the batch has only this job (its
    own exit code; a share of one job in a larger batch is not that: its summary must be written)."""
    if batch_jobs == 1:
        raise exc
    failures.append((name, exc))
    reporter.item_error(name, str(exc))
    reporter.result({"input": name, "status": "error", "error": str(exc)})


def prepare(run: JobRun, reporter: "Reporter") -> tuple[list[tuple[dict, dict[str, "Image.Image"], list]], list]:
    """This rank's jobs that can run: existing outputs refused (unless overwriting; with ``skip_existing`` a job whose
    outputs all exist is left out) and every input image read (of a video, its header), with no model loaded yet.
    Returns ``(ready, failures)``; ``ready`` holds ``(job, images, output names)``."""
    from i2i.diffusion.video_jobs import check_video_job, is_video_job, video_job_names
    from i2i.images import load_image, names_one_file, refuse_replacing_inputs
    from i2i.preprocess.kinds import check_kind
    from i2i.video import is_video_file

    check_kind(run.preprocess)                     # a bad kind stops the command before any model is loaded
    videos = is_video_file(run.out) and any(is_video_job(run, job) for job in run.jobs)   # --out clip.mp4
    if is_video_file(run.out) and not videos and not run.out.is_dir():
        raise UsageError(f"--out {run.out} names a video file, but no input is a video: images would be written; "
                         "give a folder or an image file name")
    one_file = not videos and names_one_file(run.out, sum(job["num_images"] for job in run.jobs), "images")
    part, mine = run.share()
    if part.count > 1:
        reporter.info(f"rank {part.index} of {part.count}: {len(mine)} of {len(run.jobs)} job(s)")
    failures: list[tuple[str, I2IError]] = []
    planned = []
    for job in mine:
        video = is_video_job(run, job)
        names = output_names(job, run.out, one_file, run.extras)
        planned.append((job, video, video_job_names(run, job, names) if video else names))
    sources = [job[key] for job in run.jobs for key in run.schema.images if job.get(key) is not None]
    refuse_replacing_inputs(sources, [p for _, _, names in planned for entry in names for p in entry.values()])
    ready = []
    for job, video, names in planned:
        if run.skip_existing and all(p.exists() for entry in names for p in entry.values()):
            continue                                   # done by an earlier run: counted by run_jobs
        try:
            if video:
                check_video_job(run, job, names[0]["image"])
            images = {key: load_image(job[key]) for key in run.schema.images
                      if job.get(key) is not None and not (video and key == run.schema.primary)}
            existing = None if run.overwrite or run.skip_existing else existing_output(names)
            if existing is not None:
                raise OutputError(f"{existing}: already exists (pass --overwrite to replace it)")
        except (InputError, OutputError) as exc:
            _fail(len(run.jobs), failures, job[run.schema.primary] if isinstance(exc, InputError) else job["name"],
                  exc, reporter)
            continue
        ready.append((job, images, names))
    return ready, failures


def make_maps(run: JobRun, model: Any, ready: list[tuple[dict, dict[str, "Image.Image"], list]]) -> None:
    """Replace the first image of every ready job by its ``run.preprocess`` map, made at the model's working size
    (``run.map_size(model)``) so that a map's thin lines are drawn at the resolution the model sees them."""
    if run.preprocess == "none" or run.schema.primary is None:
        return
    from i2i.preprocess.maps import condition_map

    size = run.map_size(model) if run.map_size is not None else None
    primary = run.schema.primary
    for _, images, _ in ready:
        if primary in images:                      # not a video job's (its frames are mapped one by one)
            images[primary] = condition_map(images[primary], run.preprocess, size)


def run_jobs(run: JobRun, load: Callable[[], Any],
             generate: Callable[[Any, dict[str, Any], dict[str, "Image.Image"]], JobResult],
             reporter: "Reporter") -> "BatchSummary":
    """The generation loop of every method: :func:`prepare`, then ``load()`` (the model, only if some job can
    run), then per job ``generate(model, job, images)``, its images saved and one record per image reported.
    A failing job fails the command when it is the only one, else it is reported and the rest go on
    (:class:`PartialFailure` at the end). Returns the batch's :class:`~i2i.summary.BatchSummary`: jobs generated,
    skipped (``run.skip_existing``: all their outputs existed) and failed in this process's share."""
    from i2i.images import check_writable, remove_stale_temps

    ready, failures = prepare(run, reporter)
    done = 0
    if ready:
        check_writable([p for _, _, names in ready for entry in names for p in entry.values()])
        model = load()
        make_maps(run, model, ready)
        remove_stale_temps([p for _, _, names in ready for entry in names for p in entry.values()])
    for job, images, names in ready:
        try:
            _run_job(run, model, job, images, names, generate, reporter)
            done += 1
        except I2IError as exc:
            if stops_the_batch(exc):
                raise                                  # a full disk: every later job would fail too
            _fail(len(run.jobs), failures, job["name"], exc, reporter)
    return _finish(run, done, failures, reporter)


def _run_job(run: JobRun, model: Any, job: dict[str, Any], images: dict[str, "Image.Image"],
             names: list[dict[str, Path]], generate: Callable, reporter: "Reporter") -> None:
    """Generate one job, save its images (or its video: :mod:`i2i.diffusion.video_jobs`) and report a record
    per output."""
    from i2i.diffusion.video_jobs import generate_clip, is_video_job

    if is_video_job(run, job):
        fields, seconds = generate_clip(run, model, job, images, names[0]["image"], generate, reporter)
        record = result_record(job, run.schema, {"image": names[0]["image"]}, seconds, fields)
        reporter.info(f"wrote {record['image']} ({record['frames']} frames)")
        reporter.result(record)
        return
    start = time.perf_counter()
    result = generate(model, job, images)
    seconds = time.perf_counter() - start
    for k, paths in enumerate(names):
        written, kept = _save_job_image(run, result, k, paths)
        reporter.info(("kept " if kept else "wrote ") + " and ".join(str(p) for p in written.values()))
        record = result_record(job, run.schema, written, seconds, result.record, "skipped" if kept else "ok")
        if run.scorers is not None:
            from i2i.metrics.score import score_records

            record = score_records([record], run.scorers, condition_key=run.schema.primary)[0]
        reporter.result(record)


def _save_job_image(run: JobRun, result: JobResult, k: int, paths: dict[str, Path]
                    ) -> tuple[dict[str, Path], bool]:
    """Save image ``k`` of ``result`` and its extras at ``paths`` (with ``skip_existing``, those that are not
    there yet); returns what it names, and whether the image itself was kept from an earlier run."""
    from i2i.images import save_image

    pictures = {"image": result.images[k], **{extra: images[k] for extra, images in result.extras.items()}}
    kept = set()
    for key, picture in pictures.items():
        if run.skip_existing and paths[key].exists():
            kept.add(key)
            continue
        try:
            save_image(picture, paths[key], overwrite=run.overwrite)
        except OutputError:
            if not (run.skip_existing and paths[key].exists()):   # else written meanwhile by another run
                raise
            kept.add(key)
    return {key: paths[key] for key in pictures}, "image" in kept


def _finish(run: JobRun, done: int, failures: list[tuple[str, str]], reporter: "Reporter") -> "BatchSummary":
    """The batch's summary (reported with ``run.report_summary``); :class:`PartialFailure` if any job failed."""
    from i2i.summary import BatchSummary

    part, mine = run.share()
    reasons = [(name, str(exc)) for name, exc in failures]
    summary = BatchSummary(run.command, part, len(run.jobs), len(mine), done, len(mine) - done - len(failures),
                           reasons, verb="generated", out=str(run.out))
    if run.report_summary:
        reporter.info(summary.line())
        reporter.result(summary.record())
    if failures:
        raise batch_failure([exc for _, exc in failures], reasons, len(mine) - summary.skipped, done, "job(s)")
    return summary
