"""One command for every diffusion method (``i2i freecontrol``, ``i2i ctrlx``, ``i2i generate``).

A method gives its :class:`~i2i.diffusion.method.DiffusionMethod` (config, pipeline, job schema, seed) and,
optionally, a function of its own Typer flags returning :class:`MethodFlags` (image inputs, job defaults, load and
run arguments). The shared flags (prompts, job file, model, device, precision, seed, outputs, scores, ...) and
the run (settings, jobs, model loading, the job loop :func:`i2i.diffusion.jobs.run_jobs`) are written here once;
the config's declared fields become flags (:mod:`i2i.cli.options`) whose help shows the defaults that will run
for the model named by ``--model`` (else ``$I2I_<METHOD>_MODEL``, else the bundled demo model).

Under ``accelerate launch`` (or torchrun) each process takes the jobs whose index modulo ``WORLD_SIZE`` equals its
``RANK``; output names depend only on the job, so a sharded batch writes the same files as a single process.
"""
# No ``from __future__ import annotations``: Typer reads the annotations of the command built here.

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from i2i.cli.common import (BATCH_PANEL, ConfigOpt, DebugOpt, DeviceOpt, DiffusionPrecisionOpt, Group, JsonOpt,
                            NumImagesOpt, OutDirOpt, OverwriteOpt, QuietOpt, ShardOpt, SkipExistingOpt, TextDeviceOpt,
                            VaeDecodeOpt, VaeOpt, quiet_libraries, run_guarded)
from i2i.cli.options import Defaults, Source, declared_command, given_changes, peek_option
from i2i.cli.preprocess import PreprocessOpt
from i2i.cli.score import DEFAULT_CLIP, DEFAULT_DINO, JobClipOpt, JobDinoOpt, ScoreOpt, TextScoreOpt, job_scorers
from i2i.diffusion.method import DiffusionMethod
from i2i.progress import Reporter


@dataclass
class MethodFlags:
    """What a method's own flags add to a run: ``images`` (job image key -> the paths given, paired with
    ``--prompt``), ``job_defaults`` (job keys a job file may override), ``config`` (config changes its flags make
    beyond the declared ones), ``load`` / ``run`` (more arguments of the pipeline's ``from_pretrained`` /
    ``run_job``), ``extras`` (save the companion outputs of the method's job schema) and ``check`` (called with
    the jobs and the method's settings before any model loads: the method's own checks of its flags and job
    values; it returns ``run_job`` arguments it prepared on the way, such as a file it read, or None)."""

    images: dict[str, list[str]] = field(default_factory=dict)
    job_defaults: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    extras: bool = False
    check: Optional[Callable[[list[dict[str, Any]], Any], Optional[dict[str, Any]]]] = None


@dataclass
class Shared:
    """The shared flags of one invocation."""

    prompt: list[str]
    jobs: Optional[Path]
    model: Optional[str]
    model_config_dir: Optional[str]
    vae: Optional[str]
    vae_decode: str
    text_encoder_device: Optional[str]
    seed: Optional[int]
    num_images: int
    out: Path
    overwrite: bool
    skip_existing: bool
    shard: Optional[str]
    preprocess: str
    score: bool
    dino: str
    clip: str
    device: Optional[str]
    precision: str


def model_defaults(method: DiffusionMethod) -> Callable[[list[str]], Defaults]:
    """What ``--help`` shows as each declared flag's default: the config for the model on the command line (its
    recommended settings applied, "from the model"), beside the method's own default where they differ."""
    def defaults(args: list[str]) -> Defaults:
        from i2i.errors import I2IError

        try:
            model = method.default_model(peek_option(args, "--model", "-m"))
            values = method.model_config(model)
        except I2IError:                      # an unreadable settings file fails when the command runs
            values = method.config()
        return Defaults(values=values, usual=method.config(), note="from the model", usual_label="otherwise")

    return defaults


def _shared_command(method: DiffusionMethod) -> Callable[..., None]:
    """The shared flags as a function signature; calling it returns the flags (the rest are the method's)."""
    primary = method.jobs.primary
    pairing = f" (paired with --{primary} in order; one of them may be given once for all)" if primary else ""
    keys = ", ".join(["prompt", *method.jobs.images, *method.jobs.options, "seed", "num_images", "name"])
    model_help = (f"A diffusers SD 1.x/2.x/SDXL folder, hub id (hub: from the local cache when HF_HUB_OFFLINE=1) "
                  f"or single .safetensors/.ckpt file (with --config). Default: ${method.model_env}, else the "
                  f"bundled demo model. A folder's recommended settings (i2i_{method.name}.json) replace the "
                  "defaults below.")

    def command(
        ctx: typer.Context,
        prompt: Annotated[Optional[list[str]], typer.Option(
            "--prompt", "-p", help=f"Text prompt; repeat for several{pairing}.", rich_help_panel=BATCH_PANEL)] = None,
        jobs: Annotated[Optional[Path], typer.Option(
            "--jobs", help=f"JSONL job file: one JSON object per line (keys: {keys}).",
            rich_help_panel=BATCH_PANEL)] = None,
        model: Annotated[Optional[str], typer.Option("--model", "-m", help=model_help)] = None,
        model_config_dir: ConfigOpt = None, vae: VaeOpt = None, vae_decode: VaeDecodeOpt = "auto",
        text_encoder_device: TextDeviceOpt = None,
        seed: Annotated[Optional[int], typer.Option(
            "--seed", help=f"Seed of the first job; job i uses seed+i unless it sets its own (default: "
            f"{method.seed}).", rich_help_panel="Common")] = None,
        num_images: NumImagesOpt = 1, out: OutDirOpt = Path("out"), overwrite: OverwriteOpt = False,
        skip_existing: SkipExistingOpt = False, shard: ShardOpt = None, preprocess: PreprocessOpt = "none",
        score: ScoreOpt = False, dino: JobDinoOpt = DEFAULT_DINO, clip: JobClipOpt = DEFAULT_CLIP,
        device: DeviceOpt = None, precision: DiffusionPrecisionOpt = "fp32",
    ) -> Shared:
        return Shared(prompt or [], jobs, model, model_config_dir, vae, vae_decode, text_encoder_device, seed,
                      num_images, out, overwrite, skip_existing, shard, preprocess, score, dino, clip, device,
                      precision)

    return command


def _job_flags(method: DiffusionMethod, taken: set[str]) -> list[inspect.Parameter]:
    """One flag per image key of the method's jobs (repeatable paths) and per text option that is not a config
    field, declared by the job schema (:class:`~i2i.diffusion.jobs.JobFlag`) or given a generic help."""
    from i2i.diffusion.jobs import JobFlag

    schema, fields = method.jobs, {f.name for f in dataclasses.fields(method.config)}
    primary = schema.primary
    params = []
    for key in (*schema.images, *(k for k in schema.options if k not in fields)):
        image = key in schema.images
        if key in taken:
            raise ValueError(f"{method.name}: job key {key!r} would shadow the command's own --{key}")
        generic = (f"{key} image; repeatable (paired with --prompt in order)." if key == primary else
                   f"{key} image: once for all, or once per --{primary}." if image else
                   f"The jobs' {key} (text; a job file's \"{key}\" overrides it).")
        declared = schema.flags.get(key) or JobFlag(generic)
        names = [f"--{key.replace('_', '-')}", *([f"-{declared.short}"] if declared.short else [])]
        kind = Optional[list[str]] if image else Optional[str]
        option = typer.Option(*names, help=declared.help, show_default=False,
                              rich_help_panel=declared.panel or BATCH_PANEL)
        params.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[kind, option]))
    return params


def diffusion_app(method: DiffusionMethod, flags: Optional[Callable[..., MethodFlags]] = None,
                  skip: tuple[str, ...] = ()) -> typer.Typer:
    """The Typer app of ``method``: its command is the app's callback (so subcommands such as
    ``freecontrol bases`` can be added); ``flags``: a function of the method's own Typer flags; ``skip``: declared
    config flags this command leaves out."""
    shared = _shared_command(method)
    common = {"quiet": QuietOpt, "json": JsonOpt, "debug": DebugOpt}
    params = [p for p in inspect.signature(shared).parameters.values()
              if method.jobs.primary or p.name not in ("preprocess", "dino")]    # (no condition image: no map,
    if not method.jobs.primary:                                                    # no structure score)
        params = [p.replace(annotation=TextScoreOpt) if p.name == "score" else p for p in params]
    own = list(inspect.signature(flags).parameters.values()) if flags else []
    tail = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=kind)
            for name, kind in common.items()]
    jobs = _job_flags(method, {p.name for p in (*params, *own)} | set(common))

    def command(**values: Any) -> None:
        ctx = values.pop("ctx")
        if ctx.invoked_subcommand is not None:
            return
        quiet, json, debug = (values.pop(name) for name in common)
        method_flags = flags(**{p.name: values.pop(p.name) for p in own}) if flags else MethodFlags()
        given_jobs = {p.name: values.pop(p.name) for p in jobs}
        method_flags.images = {**{k: v or [] for k, v in given_jobs.items() if k in method.jobs.images},
                               **method_flags.images}
        method_flags.job_defaults = {**{k: v for k, v in given_jobs.items() if k not in method.jobs.images},
                                     **method_flags.job_defaults}
        given = shared(ctx, **values)
        if not any(getattr(ctx.get_parameter_source(p.name), "name", "") == "COMMANDLINE"
               for p in ctx.command.get_params(ctx)):
            typer.echo(ctx.get_help())                    # the bare command: its help (flags without inputs: an error)
            raise typer.Exit(0)
        reporter = Reporter(quiet=quiet, json_mode=json)
        run_guarded(lambda: run(method, given, method_flags, given_changes(ctx), reporter), debug, reporter)

    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*params, *jobs, *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own), *tail])
    command.__doc__ = method.usage
    sources = lambda args: [Source(method.config, skip=skip)]  # noqa: E731
    group = type("DeclaredGroup", (declared_command(sources, model_defaults(method)), Group),  # group + flags
                 {name: getattr(TyperGroup, name) for name in ("__init__", "format_options", "main")})
    app = typer.Typer(help=method.summary, add_completion=False, pretty_exceptions_enable=False,
                      invoke_without_command=True)
    app.callback(cls=group)(command)
    return app


def run(method: DiffusionMethod, given: Shared, own: MethodFlags, changes: dict[str, Any],
        reporter: Reporter) -> None:
    """Everything a diffusion command does: the library's :func:`~i2i.diffusion.batch.run_batch` with the flags."""
    from i2i.diffusion.batch import run_batch

    load = {"config": given.model_config_dir, "vae": given.vae, "vae_decode": given.vae_decode,
            "text_encoder_device": given.text_encoder_device, **own.load}
    scorers = (lambda dev: job_scorers(True, given.dino, given.clip, dev, conditioned=bool(method.jobs.primary))
               ) if given.score else None
    run_batch(method, given.prompt, own.images, given.jobs, given.out, model=given.model,
              changes={**changes, **own.config}, job_defaults=own.job_defaults, seed=given.seed,
              num_images=given.num_images, overwrite=given.overwrite, skip_existing=given.skip_existing,
              shard=given.shard, preprocess=given.preprocess, extras=own.extras, device=given.device,
              precision=given.precision, load=load, run=own.run, check=own.check, scorers=scorers,
              before_load=quiet_libraries, reporter=reporter)
