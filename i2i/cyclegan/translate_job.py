"""A whole ``translate`` job: inputs expanded, this process's share taken, images and videos translated, a summary.

What ``i2i cyclegan translate`` runs, for Python callers too::

    from i2i.cyclegan.translate_job import translate_inputs
    summary, result = translate_inputs(["photos/", "clip.mp4"], "out/", load, TranslateConfig(skip_existing=True))

``load`` is called (once, and only when there is work) for ``(generator, generator_config)``, so a job whose
outputs all exist never loads a model. Sharding (:mod:`i2i.shard`) is over the whole input list, images and videos
alike, before anything is skipped: a restart shares the inputs the same way.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from i2i.errors import UsageError
from i2i.images import (InputItem, check_writable, expand_inputs, names_one_file, output_path, refuse_if_all_exist,
                        refuse_replacing_inputs, remove_stale_temps)
from i2i.progress import Reporter
from i2i.shard import current_shard
from i2i.summary import BatchSummary

if TYPE_CHECKING:
    from i2i.cyclegan.translator import TranslateConfig, TranslateResult
    from i2i.video.translate import VideoOptions


def translate_inputs(inputs: Sequence[str], out: str | os.PathLike, load: Callable[[], tuple[Any, Any]],
                     cfg: "TranslateConfig", video: "VideoOptions | None" = None, shard: str | None = None,
                     device: Any = None, reporter: Reporter | None = None,
                     ) -> tuple[BatchSummary, "TranslateResult"]:
    """Translate this process's share of ``inputs`` (files, folders, globs, ``@list.txt``; images and videos)
    into ``out`` (a folder, or for one input the output file itself). ``video``: how clips are encoded (None: the
    defaults, H.264/MP4); ``device``: where the images are computed (None: where ``load`` put the generator).
    Returns the share's summary and the per-file result; failures are in both. A batch of one input that failed
    raises that input's error (:meth:`TranslateResult.single_error`)."""
    from i2i.cyclegan.translator import TranslateResult
    from i2i.video import is_video_file, split_videos, video_targets

    reporter = reporter or Reporter.library()
    out, part = Path(out), current_shard(shard)
    items = expand_inputs(inputs, out=out, exclude=lambda found: _without_earlier_outputs(found, inputs, out, cfg,
                                                                                          reporter))
    out_dir = out
    images_all, videos_all = split_videos(items)
    if is_video_file(out) and not videos_all and not out.is_dir():
        raise UsageError(f"--out {out} names a video file, but no input is a video: give a folder or an image file "
                         "name")
    if images_all and names_one_file(out, len(items), "outputs"):     # --out zebra.png: exactly that file
        items = [InputItem(images_all[0].path, Path(out.name))]        # output_path keeps "a.b" of "a.b.png"
        out_dir, cfg = out.parent, dataclasses.replace(cfg, ext=out.suffix, suffix="")
    mine = part.take(items)                          # the whole list when not sharded
    images, videos = split_videos(mine)
    clip_targets = video_targets(videos, out, cfg.suffix, len(images_all)) if videos_all else []
    video = _checked_video_options(video, clip_targets) if videos else video
    targets = [output_path(it, out_dir, cfg.suffix, cfg.ext) for it in images] + clip_targets
    refuse_replacing_inputs(images_all + videos_all, targets)
    refuse_if_all_exist(targets, cfg.overwrite or cfg.skip_existing)
    check_writable(targets)
    result = TranslateResult()
    videos, clip_targets = _skip_existing_videos(videos, clip_targets, cfg, result)
    if images or videos:
        result = _translate(images, videos, clip_targets, load, out_dir, cfg, video, device, reporter, result)
    single = result.single_error(len(items))        # the batch's one input (a share of one is not a single input)
    if single is not None:
        raise single
    summary = BatchSummary("cyclegan translate", part, len(items), len(mine), len(result.ok),
                           len(result.skipped), result.failed, out=str(out))
    return summary, result


def _without_earlier_outputs(items: list[InputItem], specs: Sequence[str | os.PathLike], out: Path,
                             cfg: "TranslateConfig", reporter: Reporter) -> list[InputItem]:
    """``items`` without the files found in a folder or glob that are another item's output (``--out`` the input
    folder with ``--suffix``: an earlier run's outputs are not inputs), so that a restart or another share sees
    the same input list. A file named on the command line stays an input (and is never written over)."""
    from i2i.video import is_video_file

    named = {Path(os.fspath(s)).resolve() for s in specs if Path(os.fspath(s)).is_file()}
    produced = {}
    for it in items:
        ext = ".mp4" if is_video_file(it.path) else cfg.ext
        produced.setdefault(output_path(it, out, cfg.suffix, ext).resolve(), it.path.resolve())
    kept = [it for it in items if it.path.resolve() in named
            or produced.get(it.path.resolve(), it.path.resolve()) == it.path.resolve()]
    if len(kept) < len(items):
        reporter.info(f"{len(items) - len(kept)} file(s) in the input folders are outputs of the others "
                      f"(suffix {cfg.suffix!r}); left out")
    return kept


def _checked_video_options(video: "VideoOptions | None", targets: Sequence[Path]) -> "VideoOptions":
    """The clip options with their encoder checked against each output container (an unknown codec, or one the
    container does not take, is a usage error before any model loads)."""
    from i2i.video.translate import VideoOptions
    from i2i.video.writing import check_encoder, container_format

    video = video or VideoOptions()
    for fmt in dict.fromkeys(container_format(t) for t in targets):
        check_encoder(video.encode, fmt)
    return video


def _skip_existing_videos(videos: list, targets: list[Path], cfg: "TranslateConfig", result: "TranslateResult"):
    """With ``skip_existing``, clips whose output exists are counted as skipped and left out."""
    if not cfg.skip_existing:
        return videos, targets
    keep = [(v, t) for v, t in zip(videos, targets) if not t.exists()]
    result.skipped.extend(t for t in targets if t.exists())
    return [v for v, _ in keep], [t for _, t in keep]


def _translate(images, videos, clip_targets, load, out_dir, cfg, video, device, reporter, result):
    from i2i.cyclegan.translator import translate_images

    gen, gen_cfg = load()
    if device is None:                                # where load() put the generator
        device = next(gen.parameters()).device
    if images:
        done = translate_images(images, gen, gen_cfg, out_dir, cfg, device, reporter)
        done.skipped.extend(result.skipped)
        result = done
    if videos:
        from i2i.video.translate import translate_videos

        remove_stale_temps(clip_targets)              # left by a killed run
        result = translate_videos(videos, clip_targets, gen, gen_cfg, cfg, video, device, reporter, result)
    return result
