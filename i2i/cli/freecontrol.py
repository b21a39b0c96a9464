"""``i2i freecontrol``: guided synthesis from prompt/condition pairs or a JSONL job file, and ``bases``.

Parses flags, builds the config and jobs, and calls :class:`i2i.freecontrol.pipeline.FreeControlPipeline`.
Under ``accelerate launch`` (or torchrun) each process takes the jobs whose index modulo ``WORLD_SIZE`` equals its
``RANK``; output names depend only on the job, so a sharded batch writes the same files as a single process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from i2i.cli.common import (BATCH_PANEL, ConfigOpt, DebugOpt, DeviceOpt, DiffusionPrecisionOpt, JsonOpt,
                            NumImagesOpt, OutDirOpt, OverwriteOpt, QuietOpt, TextDeviceOpt, VaeDecodeOpt, VaeOpt,
                            check_vae_options, default_model, given, quiet_libraries, run_guarded,
                            warn_unknown_demo_words)
from i2i.cli.score import DEFAULT_CLIP, DEFAULT_DINO, JobClipOpt, JobDinoOpt, ScoreOpt, job_scorers
from i2i.cli.preprocess import PreprocessOpt
from i2i.freecontrol.config import DEFAULT_SEED
from i2i.progress import Reporter

app = typer.Typer(help="FreeControl (Mo et al., CVPR 2024): training-free spatial control of a text-to-image "
                       "diffusion model (SD 1.x, 2.x, SDXL) with any condition image.",
                  add_completion=False, pretty_exceptions_enable=False, invoke_without_command=True)

GUIDE = "Guidance (official defaults)"
BATCH = BATCH_PANEL
ANALYSIS = "Analysis stage (semantic bases)"
SHOW = "Basis pictures (--show)"
MODEL_ENV = "I2I_FREECONTROL_MODEL"
MODEL_SETTING = "or the model's recommended setting"
# Settings named in the start-up info line.
SHOWN_SETTINGS = ("num_inference_steps", "guidance_scale", "structure_weight", "appearance_weight", "mask_threshold",
                  "negative_prompt", "inversion_steps")

ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="A diffusers SD 1.x/2.x/SDXL folder, hub id (hub: from the local cache when "
    "HF_HUB_OFFLINE=1) or single .safetensors/.ckpt file (with --config). Default: $I2I_FREECONTROL_MODEL, else the "
    "bundled demo model. A folder's recommended settings (i2i_freecontrol.json) replace the defaults below.")]
CacheOpt = Annotated[Optional[Path], typer.Option(
    "--cache-dir", help="Inversion and bases cache (default: $I2I_CACHE_DIR/freecontrol or "
    "~/.cache/i2i/freecontrol).")]
SizeOpt = Annotated[Optional[int], typer.Option(
    "--size", help="Long side of the output in pixels; the short side follows the condition's aspect ratio "
    "(rounded to the model's size unit) and the condition is resized to that (default: the model's native size, "
    "e.g. 512 for SD 1.5, 1024 for SDXL). The analysis runs square at this size.")]
ComponentsOpt = Annotated[Optional[int], typer.Option(
    "--components", help="PCA components used by the structure energy, and kept by the analysis (default: 64).",
    rich_help_panel=GUIDE)]
SeedImagesOpt = Annotated[Optional[int], typer.Option(
    "--seed-images", help="Seed images generated for the analysis (default: 20).", rich_help_panel=ANALYSIS)]
BasesStepsOpt = Annotated[Optional[int], typer.Option(
    "--bases-steps", help="DDIM steps of the analysis run (default: 200, or the model's recommended setting; "
    "the demo model: 50).", rich_help_panel=ANALYSIS)]
BasesSeedOpt = Annotated[Optional[int], typer.Option(
    "--bases-seed", help="Seed of the analysis images (default: 2024).", rich_help_panel=ANALYSIS)]


@app.callback()
def generate(
    ctx: typer.Context,
    prompt: Annotated[Optional[list[str]], typer.Option(
        "--prompt", "-p", help="Text prompt; repeat for several (paired with --condition in order; one of them "
        "may be given once for all).", rich_help_panel=BATCH)] = None,
    condition: Annotated[Optional[list[str]], typer.Option(
        "--condition", "-c", help="Condition image (sketch, depth, edges, a photo, ...); repeatable.",
        rich_help_panel=BATCH)] = None,
    jobs: Annotated[Optional[Path], typer.Option(
        "--jobs", help="JSONL job file: one {\"prompt\", \"condition\", ...} object per line (keys: prompt, "
        "condition, appearance, inversion_prompt, appearance_prompt, subject, concept, seed, num_images, img2img, "
        "name).", rich_help_panel=BATCH)] = None,
    appearance: Annotated[Optional[list[str]], typer.Option(
        "--appearance", "-a", help="Appearance image: DDIM-inverted, its appearance vectors replace the unguided "
        "sibling's in the appearance energy, so the output takes its colours (weight: --appearance-weight); once "
        "for all, or once per --condition.", rich_help_panel=BATCH)] = None,
    appearance_prompt: Annotated[Optional[str], typer.Option(
        "--appearance-prompt", help="Describes the appearance image for its DDIM inversion (default: the prompt).",
        rich_help_panel=BATCH)] = None,
    model: ModelOpt = None, model_config_dir: ConfigOpt = None,
    vae: VaeOpt = None, vae_decode: VaeDecodeOpt = "auto", text_encoder_device: TextDeviceOpt = None,
    inversion_prompt: Annotated[Optional[str], typer.Option(
        "--inversion-prompt", help="Describes the condition image for its DDIM inversion, e.g. \"a sketch of a "
        "dog\" (default: the prompt).", rich_help_panel=BATCH)] = None,
    subject: Annotated[Optional[str], typer.Option(
        "--subject", help="\"COND_WORD;GEN_WORD\", e.g. \"dog;lion\": COND_WORD's cross-attention in the inversion "
        "prompt gives the mask, GEN_WORD the concept (default: every word of the inversion prompt).",
        rich_help_panel=BATCH)] = None,
    concept: Annotated[Optional[str], typer.Option(
        "--concept", help="Concept of the semantic bases (default: GEN_WORD of --subject, else the prompt's last "
        "word before its first comma).", rich_help_panel=ANALYSIS)] = None,
    bases: Annotated[Optional[Path], typer.Option(
        "--bases", help="Use this bases file (.safetensors from `i2i freecontrol bases`, or the official "
        "pca_info.pt) instead of the cache.", rich_help_panel=ANALYSIS)] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="DDIM steps (default: 200, or the model's "
                                                 "recommended setting; the demo model: 50).",
                                                 rich_help_panel=GUIDE)] = None,
    guidance_scale: Annotated[Optional[float], typer.Option(
        "--guidance-scale", help="Classifier-free guidance scale (default: 7.5).", rich_help_panel=GUIDE)] = None,
    structure_weight: Annotated[Optional[float], typer.Option(
        "--structure-weight", help="Weight of the guidance energy; 0 turns guidance off (default: 600, or the model's "
        "recommended setting; the demo model: 1200).",
        rich_help_panel=GUIDE)] = None,
    appearance_weight: Annotated[Optional[float], typer.Option(
        "--appearance-weight", help="Appearance energy factor, relative to the structure weight (default: 0.1).",
        rich_help_panel=GUIDE)] = None,
    appearance_components: Annotated[Optional[int], typer.Option(
        "--appearance-components", help="Semantic components whose regions give the appearance vectors (default: "
        "2).", rich_help_panel=GUIDE)] = None,
    guidance_end: Annotated[Optional[float], typer.Option(
        "--guidance-end", help="Guide the first this fraction of the steps (default: 0.6).",
        rich_help_panel=GUIDE)] = None,
    warmup: Annotated[Optional[float], typer.Option(
        "--warmup", help="Fraction of the steps over which the weight ramps up from 0 (default: 0.05).",
        rich_help_panel=GUIDE)] = None,
    components: ComponentsOpt = None,
    mask_threshold: Annotated[Optional[float], typer.Option(
        "--mask-threshold", help="Threshold of the subject cross-attention mask; 0: no mask (default: 0.3, or the "
        "model's recommended setting; the demo model: 0).",
        rich_help_panel=GUIDE)] = None,
    penalty: Annotated[Optional[float], typer.Option(
        "--penalty", help="Background penalty factor outside the mask (default: 10).",
        rich_help_panel=GUIDE)] = None,
    negative_prompt: Annotated[Optional[str], typer.Option(
        "--negative-prompt", help="Negative prompt (default: the official \"longbody, lowres, bad anatomy, ...\", "
        "or the model's recommended setting; the demo model: \"outline\").",
        rich_help_panel=GUIDE)] = None,
    inversion_steps: Annotated[Optional[int], typer.Option(
        "--inversion-steps", help="DDIM inversion steps of the condition (default: 999, or the model's "
        "recommended setting; the demo model: 200).",
        rich_help_panel=GUIDE)] = None,
    img2img: Annotated[bool, typer.Option(
        "--img2img", help="Image-to-image: start from the condition's inverted latent, no mask.",
        rich_help_panel=GUIDE)] = False,
    size: SizeOpt = None, preprocess: PreprocessOpt = "none",
    seed: Annotated[Optional[int], typer.Option(
        "--seed", help=f"Seed of the first job; job i uses seed+i unless it sets its own (default: {DEFAULT_SEED}).",
        rich_help_panel="Common")] = None,
    num_images: NumImagesOpt = 1,
    save_unguided: Annotated[bool, typer.Option(
        "--save-unguided", help="Also save the unguided sibling (same noise, no guidance) as NAME_unguided.png.",
        rich_help_panel=BATCH)] = False,
    out: OutDirOpt = Path("out"),
    overwrite: OverwriteOpt = False,
    seed_images: SeedImagesOpt = None, bases_steps: BasesStepsOpt = None, bases_seed: BasesSeedOpt = None,
    cache_dir: CacheOpt = None,
    one_call: Annotated[Optional[bool], typer.Option(
        "--one-call/--two-calls", help="Speed/memory trade-off of a guided step (same images up to rounding): one "
        "UNet call on all rows (faster on GPUs, more memory) or two. Default: one call on CUDA for SD 1.x/2.x, two "
        "for SDXL and on CPUs.", show_default=False, rich_help_panel="Common")] = None,
    score: ScoreOpt = False, dino: JobDinoOpt = DEFAULT_DINO, clip: JobClipOpt = DEFAULT_CLIP,
    device: DeviceOpt = None, precision: DiffusionPrecisionOpt = "fp32", quiet: QuietOpt = False, json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Generate images that follow a condition's structure: i2i freecontrol --prompt "a photo of a lion"
    --condition sketch.png --model DIR_OR_ID. Subcommand `bases` precomputes the semantic bases."""
    if ctx.invoked_subcommand is not None:
        return
    if not (prompt or condition or jobs):
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        import dataclasses

        from i2i.device import check_precision, resolve_device
        from i2i.diffusion.jobs import JobResult, JobRun, build_jobs, run_jobs
        from i2i.diffusion.settings import describe
        from i2i.errors import UsageError
        from i2i.freecontrol.config import model_config, read_model_defaults
        from i2i.freecontrol.config import FREECONTROL_JOBS

        model_name = default_model(model, MODEL_ENV)
        base = model_config(model_name)
        bases_cfg = dataclasses.replace(base.bases, **given(num_images=seed_images, num_inference_steps=bases_steps,
                                                           seed=bases_seed, n_components=components, size=size))
        config = dataclasses.replace(base, bases=bases_cfg, img2img=img2img, **given(
            num_inference_steps=steps, guidance_scale=guidance_scale, structure_weight=structure_weight,
            appearance_weight=appearance_weight, appearance_components=appearance_components,
            guidance_end=guidance_end, warmup=warmup, n_components=components,
            mask_threshold=mask_threshold, penalty=penalty, negative_prompt=negative_prompt,
            inversion_steps=inversion_steps, size=size)).validate()
        if num_images < 1:
            raise UsageError("--num-images must be at least 1")
        all_jobs = build_jobs(FREECONTROL_JOBS, prompt or [], {"condition": condition or [],
                                                               "appearance": appearance or []}, jobs,
                              {"inversion_prompt": inversion_prompt, "appearance_prompt": appearance_prompt,
                               "subject": subject, "concept": concept,
                               "num_images": num_images, "img2img": img2img},
                              DEFAULT_SEED if seed is None else seed)
        warn_unknown_demo_words([config.negative_prompt, *(str(job[key] or "") for job in all_jobs
                                 for key in ("prompt", "inversion_prompt", "appearance_prompt", "subject",
                                             "concept"))],
                                model_name, reporter)
        dev = resolve_device(device)
        check_precision(precision, dev)
        user_given = given(num_inference_steps=steps, structure_weight=structure_weight,
                           mask_threshold=mask_threshold, negative_prompt=negative_prompt,
                           inversion_steps=inversion_steps)
        recommended = {k: v for k, v in read_model_defaults(model_name).items() if k not in user_given}
        reporter.info("settings: " + describe(config, recommended, SHOWN_SETTINGS))
        scorers = job_scorers(score, dino, clip, dev)     # before the diffusion model: missing weights fail fast
        check_vae_options(vae, vae_decode)
        if text_encoder_device:
            resolve_device(text_encoder_device)      # a bad name fails before the model loads

        def load():
            quiet_libraries()
            from i2i.freecontrol.bases import read_bases_file
            from i2i.freecontrol.pipeline import FreeControlPipeline

            fixed = read_bases_file(bases) if bases is not None else None
            reporter.info(f"loading {model_name}")
            pipe = FreeControlPipeline.from_pretrained(model_name, device=dev, precision=precision,
                                                       cache_dir=cache_dir, one_call=one_call,
                                                       config=model_config_dir, vae=vae, vae_decode=vae_decode,
                                                       text_encoder_device=text_encoder_device)
            return pipe, fixed

        def generate(loaded, job, images) -> JobResult:
            pipe, fixed = loaded
            job_cfg = dataclasses.replace(config, img2img=bool(job["img2img"]))
            result = pipe(job["prompt"], images["condition"], job_cfg, inversion_prompt=job["inversion_prompt"],
                          subject=job["subject"], concept=job["concept"], seed=job["seed"],
                          num_images=job["num_images"], bases=fixed, unguided=save_unguided,
                          appearance=images.get("appearance"), appearance_prompt=job["appearance_prompt"],
                          reporter=reporter)
            return JobResult(result.images, {"unguided": result.unguided} if save_unguided else {},
                             {"guided_steps": result.guided_steps, "skipped_steps": len(result.skipped_steps),
                              "img2img": bool(job["img2img"])})

        run = JobRun(FREECONTROL_JOBS, all_jobs, out, overwrite, ("unguided",) if save_unguided else (),
                     scorers=scorers, preprocess=preprocess,
                     map_size=lambda loaded: config.size or loaded[0].default_size)
        run_jobs(run, load, generate, reporter)

    run_guarded(go, debug, reporter)


@app.command("bases")
def bases_command(
    concept: Annotated[Optional[str], typer.Option("--concept", help="Concept to analyse, e.g. cat.")] = None,
    model: ModelOpt = None, model_config_dir: ConfigOpt = None,
    seed_images: SeedImagesOpt = None, bases_steps: BasesStepsOpt = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the analysis images (default: 2024).",
                                                rich_help_panel="Common")] = None,
    components: Annotated[Optional[int], typer.Option("--components", help="PCA components kept (default: 64).",
                                                      rich_help_panel=ANALYSIS)] = None,
    analysis_end: Annotated[Optional[float], typer.Option(
        "--analysis-end", help="Fraction of the schedule analysed (default: 0.6, the official 120 of 200 steps).",
        rich_help_panel=ANALYSIS)] = None,
    prompt_template: Annotated[Optional[str], typer.Option(
        "--prompt-template", help="Analysis prompt with {} for the concept (default: \"A photo of a {}, with a "
        "simple background, best quality, extremely detailed\").", rich_help_panel=ANALYSIS)] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", help="Seed images per UNet call (default: 4).", rich_help_panel=ANALYSIS)] = None,
    size: SizeOpt = None,
    import_official: Annotated[Optional[Path], typer.Option(
        "--import-official", help="Convert the official pca_info.pt (200-step schedule) to an i2i bases file "
        "keyed by timestep (needs --out; no model is loaded).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the bases to this "
                                                ".safetensors file; with --show, the pictures' folder (default: "
                                                "out).")] = None,
    show: Annotated[Optional[Path], typer.Option(
        "--show", help="Condition image: picture its first three semantic coordinates as RGB (the paper's Fig. 2), "
        "one PNG per analysed timestep (NAME_tNNNN.png) and NAME_grid.png, in --out.", rich_help_panel=SHOW)] = None,
    inversion_prompt: Annotated[Optional[str], typer.Option(
        "--inversion-prompt", help="With --show: describes the condition image for its inversion (default: the "
        "concept).", rich_help_panel=SHOW)] = None,
    layer: Annotated[int, typer.Option("--layer", help="With --show: which self-attention layer of the feature "
                                       "block to picture (0: the first).", rich_help_panel=SHOW)] = 0,
    inversion_steps: Annotated[Optional[int], typer.Option(
        "--inversion-steps", help="DDIM inversion steps of the --show condition, the --images and the "
        "--from-inverted seed images (default: 999, or the model's recommended setting; the demo model: 200).",
        rich_help_panel=ANALYSIS)] = None,
    images: Annotated[Optional[Path], typer.Option(
        "--images", help="A folder of your own images of the concept: each is DDIM-inverted and its keys along "
        "the inverted trajectory feed the PCA instead of generated seed images (unreadable files are skipped).",
        rich_help_panel=ANALYSIS)] = None,
    from_inverted: Annotated[bool, typer.Option(
        "--from-inverted", help="Generate the seed images to the end, DDIM-invert them, and take the keys from the "
        "inverted trajectories (the paper's analysis) instead of along the generation (the official code).",
        rich_help_panel=ANALYSIS)] = False,
    image_prompt: Annotated[Optional[str], typer.Option(
        "--image-prompt", help="With --images or --from-inverted: the prompt they are inverted with, {} for the "
        "concept (default: the analysis prompt).", rich_help_panel=ANALYSIS)] = None,
    overwrite: OverwriteOpt = False,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = None, precision: DiffusionPrecisionOpt = "fp32", quiet: QuietOpt = False, json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Analysis stage only: compute (and cache) the semantic bases of --concept, or import official ones; --show
    IMAGE pictures them on a condition image."""
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        import dataclasses

        from i2i.errors import UsageError
        from i2i.freecontrol.bases import import_official as import_fn
        from i2i.freecontrol.bases import read_concept_images, save_bases
        from i2i.freecontrol.config import model_config

        if import_official is not None:
            if out is None:
                raise UsageError("--import-official needs --out FILE.safetensors")
            result = import_fn(import_official)
            save_bases(result, out)
            reporter.info(f"wrote {out}: {len(result.timesteps)} timesteps x {len(result.layers)} layers")
            reporter.result({"path": str(out), "timesteps": len(result.timesteps), "layers": list(result.layers),
                             "components": result.n_components, "source": "official"})
            return
        if not concept:
            raise UsageError("give --concept (or --import-official FILE)")
        if images is not None and from_inverted:
            raise UsageError("--images and --from-inverted exclude each other")
        source = "images" if images is not None else "inverted" if from_inverted else "generated"
        if show is not None:
            picture_dir = check_show(show, out, overwrite)
        model_name = default_model(model, MODEL_ENV)
        # (inversion_steps None: FreeControlPipeline.semantic_bases applies the model's recommended setting)
        cfg = dataclasses.replace(model_config(model_name).bases, source=source,
                                  images=None if images is None else str(images), inversion_steps=inversion_steps,
                                  **given(
            num_images=seed_images, num_inference_steps=bases_steps, seed=seed, n_components=components,
            analysis_end=analysis_end, prompt_template=prompt_template, batch_size=batch_size, size=size,
            inversion_prompt=image_prompt)).validate()
        concept_images = read_concept_images(images, reporter) if images is not None else None
        warn_unknown_demo_words([concept], model_name, reporter)
        from i2i.device import check_precision, resolve_device

        dev = resolve_device(device)
        check_precision(precision, dev)
        quiet_libraries()
        from i2i.freecontrol.pipeline import FreeControlPipeline

        reporter.info(f"loading {model_name}")
        pipe = FreeControlPipeline.from_pretrained(model_name, device=dev, precision=precision, cache_dir=cache_dir,
                                                   config=model_config_dir)
        result = pipe.semantic_bases(concept, cfg, reporter=reporter, images=concept_images)
        if show is not None:
            show_cfg = dataclasses.replace(model_config(model_name), bases=cfg,
                                           **given(size=size, inversion_steps=inversion_steps))
            write_pictures(pipe, result, show, picture_dir, show_cfg, inversion_prompt or concept, layer, overwrite,
                           reporter)
            return
        if out is not None:
            save_bases(result, out)
        reporter.info(f"{'cached' if result.cache_hit else 'computed'} bases for '{concept}': {result.path}")
        reporter.result({"concept": concept, "source": source, "path": str(result.path),
                         "cache_hit": result.cache_hit,
                         "out": str(out) if out else None, "timesteps": len(result.timesteps),
                         "layers": list(result.layers), "components": result.n_components})

    run_guarded(go, debug, reporter)


def check_show(image: Path, out: Optional[Path], overwrite: bool) -> Path:
    """The folder of ``bases --show``'s pictures, checked before any work: ``--out`` must not name a file and, without
    ``--overwrite``, must not hold the pictures of ``image`` already."""
    from i2i.errors import OutputError, UsageError
    from i2i.freecontrol.basis_pictures import existing_pictures
    from i2i.images import load_image

    folder = out or Path("out")
    if folder.suffix.lower() in (".safetensors", ".png", ".jpg") or folder.is_file():
        raise UsageError(f"--out {folder}: with --show, --out is the pictures' folder")
    load_image(image)                               # an unreadable image fails now, before any model work
    existing = existing_pictures(folder, image.stem)
    if existing and not overwrite:
        raise OutputError(f"{existing[0]}: already exists (pass --overwrite to replace it)")
    return folder


def write_pictures(pipe: Any, bases: Any, image: Path, folder: Path, config: Any, inversion_prompt: str, layer: int,
                   overwrite: bool, reporter: Reporter) -> None:
    from i2i.freecontrol.basis_pictures import basis_pictures

    pictures = basis_pictures(pipe, image, bases=bases, inversion_prompt=inversion_prompt, config=config,
                              layer=layer, reporter=reporter)
    paths = pictures.save(folder, image.stem, overwrite)
    for t, path in zip(pictures.timesteps, paths):
        reporter.result({"condition": str(image), "timestep": t, "image": str(path), "layer": pictures.layer})
    reporter.result({"condition": str(image), "grid": str(paths[-1]), "layer": pictures.layer,
                     "tokens": list(pictures.tokens), "timesteps": len(pictures.timesteps)})
    reporter.info(f"wrote {len(paths) - 1} basis pictures and {paths[-1]} ({pictures.tokens[0]}x"
                  f"{pictures.tokens[1]} tokens, layer {pictures.layer})")
