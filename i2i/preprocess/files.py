"""Condition maps of many image files: what ``i2i preprocess`` does. Inputs are files, folders (recursive), globs
or ``@list.txt``; each map is written as PNG under the output folder at the input's relative path."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from i2i.errors import I2IError, OutputError, UsageError, batch_failure
from i2i.preprocess.kinds import check_kind
from i2i.progress import Reporter

MAPS_DIR = Path("maps")          # where maps go unless the caller names a folder or file
DEFAULT_KIND = "canny"


@dataclass
class PreprocessResult:
    """Written maps and ``(input, reason)`` failures."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def preprocess_files(inputs: Sequence[str | os.PathLike], kind: str = DEFAULT_KIND, out: str | os.PathLike = MAPS_DIR,
                     overwrite: bool = False, resolution: int | None = None,
                     reporter: Reporter | None = None) -> PreprocessResult:
    """Write the ``kind`` map of every input image under ``out`` (a folder; or, for one input, a ``.png`` / ``.jpg``
    file name). Existing outputs are refused unless ``overwrite``: all of them existing is an
    :class:`OutputError` before any work; some of them, or unreadable inputs, are reported per item and end in a
    :class:`PartialFailure` once the others are written (a single input's error is raised as it is)."""
    from i2i.images import (check_writable, expand_inputs, names_one_file, output_path, refuse_if_all_exist,
                            refuse_replacing_inputs, save_image)
    from i2i.preprocess.maps import condition_map
    from i2i.video import is_video_file

    reporter = reporter or Reporter.library()
    kind = check_kind(kind)
    out = Path(out)
    items = expand_inputs(inputs, out=out, videos=False)
    clip = next((it.path for it in items if is_video_file(it.path)), None)
    if clip is not None:
        raise UsageError(f"{clip}: a video; preprocess makes maps of images (freecontrol and ctrlx take a video "
                         "with --preprocess KIND and map each frame)")
    one_file = names_one_file(out, len(items), "maps")
    targets = [out if one_file else output_path(it, out) for it in items]
    refuse_replacing_inputs(items, targets)
    refuse_if_all_exist(targets, overwrite)
    check_writable(targets)
    result, errors = PreprocessResult(), []
    with reporter.progress(len(items), f"{kind} maps") as advance:
        for item, target in zip(items, targets):
            try:
                if not overwrite and target.exists():
                    raise OutputError(f"{target}: already exists (pass --overwrite to replace it)")
                picture = condition_map(item.path, kind, resolution)
                save_image(picture, target, overwrite=overwrite)
            except I2IError as exc:
                if len(items) == 1:
                    raise
                result.failed.append((str(item.path), str(exc)))
                errors.append(exc)
                reporter.item_error(str(item.path), str(exc))
                reporter.result({"input": str(item.path), "status": "error", "error": str(exc)})
            else:
                result.written.append(target)
                reporter.result({"input": str(item.path), "output": str(target), "kind": kind, "status": "ok",
                                 "width": picture.width, "height": picture.height})
            advance(1)
    if result.failed:
        raise batch_failure(errors, result.failed, len(items), len(result.written))
    return result
