"""``i2i ctrlx``: Ctrl-X structure and appearance control from prompt/structure(/appearance) triples or a JSONL job
file, through the shared job loop (:mod:`i2i.diffusion.jobs`): same seeds, batches, sharding, naming and exit codes
as ``i2i freecontrol``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from i2i.cli.common import (BATCH_PANEL, ConfigOpt, DebugOpt, DeviceOpt, DiffusionPrecisionOpt, JsonOpt,
                            NumImagesOpt, OutDirOpt, OverwriteOpt, QuietOpt, TextDeviceOpt, VaeDecodeOpt, VaeOpt,
                            check_vae_options, default_model, given, quiet_libraries, run_guarded,
                            warn_unknown_demo_words)
from i2i.cli.score import DEFAULT_CLIP, DEFAULT_DINO, JobClipOpt, JobDinoOpt, ScoreOpt, job_scorers
from i2i.cli.preprocess import PreprocessOpt
from i2i.progress import Reporter

app = typer.Typer(help="Ctrl-X (Lin, Mo et al., NeurIPS 2024): structure and appearance control of a text-to-image "
                       "diffusion model (SD 1.x, 2.x, SDXL) with no guidance, inversion or training.",
                  add_completion=False, pretty_exceptions_enable=False, invoke_without_command=True)

CONTROL = "Control (official defaults, or the model's recommended settings)"
BATCH = BATCH_PANEL
MODEL_ENV = "I2I_CTRLX_MODEL"
SHOWN_SETTINGS = ("num_inference_steps", "guidance_scale", "structure_schedule", "appearance_schedule", "eta",
                  "self_recurrence", "positive_prompt", "negative_prompt")
RECOMMENDED = "or the model's recommended setting"


@app.callback()
def generate(
    ctx: typer.Context,
    prompt: Annotated[Optional[list[str]], typer.Option(
        "--prompt", "-p", help="Text prompt; repeat for several (paired with --structure in order; one of them may "
        "be given once for all).", rich_help_panel=BATCH)] = None,
    structure: Annotated[Optional[list[str]], typer.Option(
        "--structure", "-s", help="Structure image (sketch, edges, depth, a photo, ...): the output keeps its "
        "layout and aspect ratio; repeatable.", rich_help_panel=BATCH)] = None,
    appearance: Annotated[Optional[list[str]], typer.Option(
        "--appearance", "-a", help="Appearance image: the output takes its colours and textures (default: an "
        "appearance generated from the prompt); once for all, or once per --structure.", rich_help_panel=BATCH)] = None,
    jobs: Annotated[Optional[Path], typer.Option(
        "--jobs", help="JSONL job file: one {\"prompt\", \"structure\", ...} object per line (keys: prompt, "
        "structure, appearance, structure_prompt, appearance_prompt, seed, num_images, name).",
        rich_help_panel=BATCH)] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="A diffusers SD 1.x/2.x/SDXL folder, hub id (hub: from the local cache when "
        "HF_HUB_OFFLINE=1) or single .safetensors/.ckpt file (with --config). Default: $I2I_CTRLX_MODEL, else the "
        "bundled demo model. A folder's recommended settings (i2i_ctrlx.json) replace the defaults below.")] = None,
    model_config_dir: ConfigOpt = None,
    vae: VaeOpt = None, vae_decode: VaeDecodeOpt = "auto", text_encoder_device: TextDeviceOpt = None,
    structure_prompt: Annotated[Optional[str], typer.Option(
        "--structure-prompt", help="Describes the structure image, e.g. \"a sketch of a dog\" (default: the "
        "prompt).", rich_help_panel=BATCH)] = None,
    appearance_prompt: Annotated[Optional[str], typer.Option(
        "--appearance-prompt", help="Describes the appearance image (default: the prompt).",
        rich_help_panel=BATCH)] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help=f"DDIM steps (default: 50, {RECOMMENDED}).",
                                                 rich_help_panel=CONTROL)] = None,
    guidance_scale: Annotated[Optional[float], typer.Option(
        "--guidance-scale", help=f"Classifier-free guidance scale (default: 5.0, {RECOMMENDED}).",
        rich_help_panel=CONTROL)] = None,
    structure_schedule: Annotated[Optional[float], typer.Option(
        "--structure-schedule", help=f"Inject structure on this first fraction of the steps (default: 0.6, "
        f"{RECOMMENDED}).", rich_help_panel=CONTROL)] = None,
    appearance_schedule: Annotated[Optional[float], typer.Option(
        "--appearance-schedule", help=f"Transfer appearance on this first fraction of the steps (default: 0.6, "
        f"{RECOMMENDED}).", rich_help_panel=CONTROL)] = None,
    eta: Annotated[Optional[float], typer.Option(
        "--eta", help=f"DDIM eta (default: the official scripts' 1.0, {RECOMMENDED}).",
        rich_help_panel=CONTROL)] = None,
    self_recurrence: Annotated[Optional[bool], typer.Option(
        "--self-recurrence/--no-self-recurrence", help="The official scripts' self-recurrence (steps 10-50 % redone "
        "twice without control): better quality, about 1.8x the UNet work (default: off, "
        f"{RECOMMENDED}).", show_default=False, rich_help_panel=CONTROL)] = None,
    positive_prompt: Annotated[Optional[str], typer.Option(
        "--positive-prompt", help=f"Appended to the prompt after a comma (default: \"high quality\", {RECOMMENDED}; "
        "the demo model: none).", rich_help_panel=CONTROL)] = None,
    negative_prompt: Annotated[Optional[str], typer.Option(
        "--negative-prompt", help="Negative prompt (default: the official \"ugly, blurry, dark, low res, "
        f"unrealistic\", {RECOMMENDED}; the demo model: \"outline\").", rich_help_panel=CONTROL)] = None,
    size: Annotated[Optional[int], typer.Option(
        "--size", help="Long side of the output in pixels; the short side follows the structure image's aspect "
        "ratio (default: the model's native size, e.g. 512 for SD 1.5, 1024 for SDXL).")] = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", help="Seed of the first job; job i uses seed+i unless it sets its own (default: 90095, the "
        "official).", rich_help_panel="Common")] = None,
    preprocess: PreprocessOpt = "none",
    num_images: NumImagesOpt = 1,
    save_branches: Annotated[bool, typer.Option(
        "--save-branches", help="Also save the structure and appearance branches as the model saw them "
        "(NAME_structure_branch.png, NAME_appearance_branch.png; a generated appearance is the prompt's).",
        rich_help_panel=BATCH)] = False,
    out: OutDirOpt = Path("out"),
    overwrite: OverwriteOpt = False,
    score: ScoreOpt = False, dino: JobDinoOpt = DEFAULT_DINO, clip: JobClipOpt = DEFAULT_CLIP,
    device: DeviceOpt = None,
    precision: DiffusionPrecisionOpt = "fp32",
    quiet: QuietOpt = False, json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Generate images with a structure image's layout: i2i ctrlx --prompt "a blue square" --structure sketch.png
    [--appearance look.png]."""
    if not (prompt or structure or appearance or jobs):
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        import dataclasses

        from i2i.ctrlx.config import (CTRLX_JOBS, DEFAULT_SEED, METHOD, OFFICIAL_SELF_RECURRENCE, CtrlXConfig,
                                      model_config)
        from i2i.device import check_precision, resolve_device
        from i2i.diffusion.jobs import JobResult, JobRun, build_jobs, run_jobs
        from i2i.diffusion.settings import describe, read_recommended
        from i2i.errors import UsageError

        model_name = default_model(model, MODEL_ENV)
        flags = given(num_inference_steps=steps, guidance_scale=guidance_scale, structure_schedule=structure_schedule,
                      appearance_schedule=appearance_schedule, eta=eta, positive_prompt=positive_prompt,
                      negative_prompt=negative_prompt, size=size)
        if self_recurrence is not None:
            flags["self_recurrence"] = OFFICIAL_SELF_RECURRENCE if self_recurrence else None
        config = dataclasses.replace(model_config(model_name), **flags).validate()
        if num_images < 1:
            raise UsageError("--num-images must be at least 1")
        all_jobs = build_jobs(CTRLX_JOBS, prompt or [], {"structure": structure or [], "appearance": appearance or []},
                              jobs, {"structure_prompt": structure_prompt, "appearance_prompt": appearance_prompt,
                                     "num_images": num_images}, DEFAULT_SEED if seed is None else seed)
        warn_unknown_demo_words([config.positive_prompt, config.negative_prompt,
                                 *(str(job[key] or "") for job in all_jobs
                                   for key in ("prompt", "structure_prompt", "appearance_prompt"))],
                                model_name, reporter)
        dev = resolve_device(device)
        check_precision(precision, dev)
        recommended = {k: v for k, v in read_recommended(model_name, METHOD, CtrlXConfig).items() if k not in flags}
        reporter.info("settings: " + describe(config, recommended, SHOWN_SETTINGS))
        scorers = job_scorers(score, dino, clip, dev)     # before the diffusion model: missing weights fail fast
        check_vae_options(vae, vae_decode)
        if text_encoder_device:
            resolve_device(text_encoder_device)      # a bad name fails before the model loads

        def load():
            quiet_libraries()
            from i2i.ctrlx.pipeline import CtrlXPipeline

            reporter.info(f"loading {model_name}")
            return CtrlXPipeline.from_pretrained(model_name, device=dev, precision=precision, config=model_config_dir,
                                                 vae=vae, vae_decode=vae_decode,
                                                 text_encoder_device=text_encoder_device)

        def run_one(pipe, job, images) -> JobResult:
            result = pipe(job["prompt"], images["structure"], images.get("appearance"), config,
                          structure_prompt=job["structure_prompt"], appearance_prompt=job["appearance_prompt"],
                          seed=job["seed"], num_images=job["num_images"], decode_branches=save_branches,
                          reporter=reporter)
            extras = {"structure_branch": result.structure, "appearance_branch": result.appearance}
            return JobResult(result.images, extras if save_branches else {},
                             {"structure_steps": result.structure_steps, "appearance_steps": result.appearance_steps})

        run = JobRun(CTRLX_JOBS, all_jobs, out, overwrite, CTRLX_JOBS.extras if save_branches else (),
                     scorers=scorers, preprocess=preprocess,
                     map_size=lambda pipe: config.size or pipe.default_size)
        run_jobs(run, load, run_one, reporter)

    run_guarded(go, debug, reporter)
