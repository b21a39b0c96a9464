"""A whole diffusion batch: what ``i2i freecontrol``, ``i2i ctrlx`` and ``i2i generate`` run, for Python callers
too, with the same settings, seeds, names, checks and job loop::

    from i2i.ctrlx.config import CTRLX
    from i2i.diffusion.batch import run_batch

    summary = run_batch(CTRLX, ["a blue square"], {"structure": ["sketch.png"]}, out="out",
                        changes={"num_inference_steps": 20})

The config that runs is the method's defaults, then the model folder's recommended settings, then ``changes`` (the
flags' part); the jobs come from ``prompts`` paired with ``images`` and from a JSONL ``jobs`` file; everything that
can be checked is checked before the model loads (:func:`i2i.diffusion.jobs.run_jobs`). Nothing here touches other
libraries' global settings: the CLI passes ``before_load`` to silence their loading bars.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from i2i.diffusion.method import DiffusionMethod
from i2i.progress import Reporter

if TYPE_CHECKING:
    from i2i.summary import BatchSummary


def method_settings(method: DiffusionMethod, model: str, changes: dict[str, Any] | None = None
                    ) -> tuple[Any, dict[str, Any]]:
    """The config that runs (the model's recommended settings read once, then ``changes``, validated) and the
    recommended settings that were not overridden (named in the settings line)."""
    from i2i.diffusion.settings import apply_recommended, not_overridden

    changes = changes or {}
    recommended = method.recommended(model)
    config = apply_recommended(method.model_config(model, recommended), changes, tuple(method.nested)).validate()
    return config, not_overridden(recommended, changes)


def run_batch(method: DiffusionMethod, prompts: Sequence[str] = (), images: dict[str, list[str]] | None = None,
              jobs: str | os.PathLike | None = None, out: str | os.PathLike = "out", *, model: str | None = None,
              changes: dict[str, Any] | None = None, job_defaults: dict[str, Any] | None = None,
              seed: int | None = None, num_images: int = 1, overwrite: bool = False, skip_existing: bool = False,
              shard: str | None = None, preprocess: str = "none", extras: bool = False, device: str | None = None,
              precision: str = "fp32", load: dict[str, Any] | None = None, run: dict[str, Any] | None = None,
              check: Callable[[list[dict[str, Any]], Any], dict[str, Any] | None] | None = None,
              scorers: Callable[[Any], Any] | None = None, before_load: Callable[[], None] | None = None,
              reporter: Reporter | None = None) -> "BatchSummary":
    """Run ``method`` over its jobs into ``out`` and return this process's summary (a failed batch raises, as the
    command exits: :class:`~i2i.errors.PartialFailure` and the others of :mod:`i2i.errors`).

    ``prompts`` pair in order with ``images`` (job image key -> paths; one of each may be given once for all);
    ``jobs``: a JSONL job file. ``model``: a folder, hub id or single file (default: ``$I2I_<METHOD>_MODEL``, else
    the bundled demo model). ``job_defaults``: job keys every job takes unless it sets its own (the schema's keys
    that are config fields take the config's value). ``load`` / ``run``: more arguments of the pipeline's
    ``from_pretrained`` (``config``, ``vae``, ``vae_decode``, ``text_encoder_device``, a method's own) / ``run_job``;
    ``check``: called with the jobs and the settings before any model loads, it may return more ``run_job`` arguments; ``extras``:
    save the schema's companion images; ``scorers``: called with the device before the model loads, returns the
    scorers of ``--score``; ``before_load``: called just before the scorers or the model load.
    """
    from i2i.demo.model import warn_unknown_words
    from i2i.device import check_precision, resolve_device
    from i2i.diffusion.jobs import JobRun, build_jobs, run_jobs
    from i2i.diffusion.settings import describe
    from i2i.diffusion.vae import check_vae_decode, check_vae_spec
    from i2i.diffusion.video_jobs import scored_video
    from i2i.errors import UsageError
    from i2i.video import is_video_file

    reporter = reporter or Reporter.library()
    load, run = dict(load or {}), dict(run or {})
    model_name = method.default_model(model)
    config, from_model = method_settings(method, model_name, changes)
    if num_images < 1:
        raise UsageError("--num-images must be at least 1")
    schema = method.jobs
    defaults = {**{k: getattr(config, k) for k in schema.options if hasattr(config, k)}, **(job_defaults or {}),
                "num_images": num_images}
    all_jobs = build_jobs(schema, list(prompts), images or {}, None if jobs is None else Path(jobs), defaults,
                          method.seed if seed is None else seed)
    texts = [getattr(config, f.name) for f in dataclasses.fields(config) if f.name.endswith("prompt")]
    warn_unknown_words([*texts, *(job[key] for job in all_jobs for key in ("prompt", *schema.options)
                                  if isinstance(job.get(key), str))], model_name, reporter)
    run.update((check(all_jobs, config) if check else None) or {})
    dev = resolve_device(device)
    check_precision(precision, dev)
    reporter.info("settings: " + describe(config, from_model, method.shown))
    video = next((job[schema.primary] for job in all_jobs if scorers and schema.primary
                  and is_video_file(job.get(schema.primary) or "")), None)
    if video is not None:                           # said before the scoring weights are looked for
        raise scored_video(video)
    if scorers and before_load:
        before_load()                               # the scoring models load first
    scoring = scorers(dev) if scorers else None     # before the model: missing weights fail fast
    check_vae_decode(load.get("vae_decode", "auto"))
    if load.get("vae"):
        check_vae_spec(load["vae"])
    if load.get("text_encoder_device"):
        resolve_device(load["text_encoder_device"])  # a bad name fails before the model loads

    def load_model() -> Any:
        if before_load:
            before_load()
        reporter.info(f"loading {model_name}")
        return method.pipeline_class().from_pretrained(model_name, device=dev, precision=precision, **load)

    # The job loop of every method (i2i.diffusion.jobs): prepare() shards, refuses existing outputs and reads the
    # inputs before load_model(); then one pipe.run_job per job, saved and reported.
    saved = schema.extras if extras else ()
    batch = JobRun(schema, all_jobs, Path(out), overwrite, saved, scorers=scoring, preprocess=preprocess,
                   map_size=lambda pipe: config.size or pipe.default_size, skip_existing=skip_existing, shard=shard,
                   report_summary=True, command=method.name)
    return run_jobs(batch, load_model,
                    lambda pipe, job, images: pipe.run_job(job, images, config, saved, reporter, **run), reporter)
