"""Condition maps of many image files: what ``i2i preprocess`` does. Inputs are files, folders (recursive), globs
or ``@list.txt``; each map is written as PNG under the output folder at the input's relative path."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from i2i.errors import I2IError, InputError, OutputError, UsageError, batch_failure
from i2i.preprocess.kinds import check_kind
from i2i.progress import Reporter
from i2i.shard import current_shard
from i2i.summary import BatchSummary

MAPS_DIR = Path("maps")          # where maps go unless the caller names a folder or file
DEFAULT_KIND = "canny"


@dataclass
class PreprocessResult:
    """Written maps, ``skipped`` outputs (existing, with ``skip_existing``), ``(input, reason)`` failures (raised
    as ``errors``), and this process's :class:`~i2i.summary.BatchSummary`."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    errors: list[I2IError] = field(default_factory=list, repr=False)
    summary: BatchSummary | None = None


def preprocess_files(inputs: Sequence[str | os.PathLike], kind: str = DEFAULT_KIND, out: str | os.PathLike = MAPS_DIR,
                     overwrite: bool = False, resolution: int | None = None, reporter: Reporter | None = None,
                     skip_existing: bool = False, shard: str | None = None) -> PreprocessResult:
    """Write the ``kind`` map of every input image of this process's share (``shard`` "K/N" and/or
    ``RANK``/``WORLD_SIZE``, :mod:`i2i.shard`) under ``out`` (a folder; or, for one input, a ``.png`` / ``.jpg``
    file name).

    Existing outputs are refused unless ``overwrite``, or counted as done with ``skip_existing``: all of them
    existing is an :class:`OutputError` before any work (with ``skip_existing``: nothing to do); some of them, or
    unreadable inputs, are reported per item and end in a :class:`PartialFailure` once the others are written
    (with ``skip_existing``, unreadable inputs alone do not: a restarted job is done when the rest is written). The
    batch's one input's error is raised as it is. The summary line (and, with ``--json``, its record) goes through
    ``reporter``; it is also ``result.summary``."""
    from i2i.images import (check_side, check_writable, check_write_mode, expand_inputs, names_one_file,
                            output_path, refuse_if_all_exist, refuse_replacing_inputs, remove_stale_temps)
    from i2i.video import is_video_file

    reporter = reporter or Reporter.library()
    kind = check_kind(kind)
    check_write_mode(overwrite, skip_existing)
    if resolution is not None:
        check_side(resolution, "--resolution")        # once, before any work (not as a failure of every input)
    out, part = Path(out), current_shard(shard)
    items = expand_inputs(inputs, out=out, videos=False)
    clip = next((it.path for it in items if is_video_file(it.path)), None)
    if clip is not None:
        raise UsageError(f"{clip}: a video; preprocess makes maps of images (freecontrol and ctrlx take a video "
                         "with --preprocess KIND and map each frame)")
    one_file = names_one_file(out, len(items), "maps")
    mine = part.take(items)                          # the whole list when not sharded
    targets = [out if one_file else output_path(it, out) for it in mine]
    refuse_replacing_inputs(items, targets)
    refuse_if_all_exist(targets, overwrite or skip_existing)
    check_writable(targets)
    if remove_stale_temps(targets):
        reporter.info("removed temporary files an interrupted run left beside the outputs")
    result = _write_maps(mine, targets, kind, resolution, overwrite, skip_existing, len(items) == 1, reporter)
    result.summary = BatchSummary("preprocess", part, len(items), len(mine), len(result.written),
                                  len(result.skipped), result.failed, verb="mapped", out=str(out))
    reporter.info(result.summary.line())
    reporter.result(result.summary.record())
    if any(not (skip_existing and isinstance(e, InputError)) for e in result.errors):
        raise batch_failure(result.errors, result.failed, len(mine), len(result.written))
    return result


def _write_maps(items: list, targets: list[Path], kind: str, resolution: int | None, overwrite: bool,
                skip_existing: bool, single: bool, reporter: Reporter) -> PreprocessResult:
    """Each item's map written to its target; failures reported per item (``single``: the batch's one input,
    whose error is raised as it is)."""
    from i2i.images import save_image, stops_the_batch
    from i2i.preprocess.maps import condition_map

    result = PreprocessResult()
    with reporter.progress(len(items), f"{kind} maps") as advance:
        for item, target in zip(items, targets):
            try:
                if skip_existing and target.exists():
                    result.skipped.append(target)
                    advance(1)
                    continue
                if not overwrite and target.exists():
                    raise OutputError(f"{target}: already exists (pass --overwrite to replace it)")
                picture = condition_map(item.path, kind, resolution)
                save_image(picture, target, overwrite=overwrite)
            except I2IError as exc:
                if isinstance(exc, OutputError) and skip_existing and target.exists():
                    result.skipped.append(target)        # written meanwhile by another run of the same job
                    advance(1)
                    continue
                if single or stops_the_batch(exc):      # a full disk: every later map would fail too
                    raise
                result.failed.append((str(item.path), str(exc)))
                result.errors.append(exc)
                reporter.item_error(str(item.path), str(exc))
                reporter.result({"input": str(item.path), "status": "error", "error": str(exc)})
            else:
                result.written.append(target)
                reporter.result({"input": str(item.path), "output": str(target), "kind": kind, "status": "ok",
                                 "width": picture.width, "height": picture.height})
            advance(1)                  # not in a `finally`: an interrupted image is not counted as done
    return result
