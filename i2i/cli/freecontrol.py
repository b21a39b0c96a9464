"""``i2i freecontrol``: guided synthesis from prompt/condition pairs or a JSONL job file (the shared diffusion
command, :mod:`i2i.cli.diffusion`, with FreeControl's own flags), and ``bases``: the analysis stage alone."""

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from i2i.cli.common import (BATCH_PANEL, ConfigOpt, DebugOpt, DeviceOpt, DiffusionPrecisionOpt, JsonOpt,
                            OverwriteOpt, QuietOpt, run_guarded)
from i2i.cli.diffusion import MethodFlags, diffusion_app
from i2i.cli.options import Defaults, Source, declared_command, given_changes, peek_option
from i2i.diffusion.cache_dir import DEFAULT_CACHE_DIR
from i2i.freecontrol.config import ANALYSIS, FREECONTROL, BasesConfig, FreeControlConfig
from i2i.progress import Reporter

SHOW = "Basis pictures (--show)"
SHOW_OUT = Path("out")              # bases --show's pictures folder without --out
CacheOpt = Annotated[Optional[Path], typer.Option(
    "--cache-dir", help=f"Inversion and bases cache (default: {DEFAULT_CACHE_DIR}).")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="A diffusers SD 1.x/2.x/SDXL folder, hub id or single .safetensors/.ckpt file (with "
    f"--config). Default: ${FREECONTROL.model_env}, else the bundled demo model; its recommended settings "
    "(i2i_freecontrol.json) replace the defaults below.")]


def freecontrol_flags(
    bases: Annotated[Optional[Path], typer.Option(
        "--bases", help="Use this bases file (.safetensors from `i2i freecontrol bases`, or the official "
        "pca_info.pt) instead of the cache.", rich_help_panel=ANALYSIS)] = None,
    save_unguided: Annotated[bool, typer.Option(
        "--save-unguided", help="Also save the unguided sibling (same noise, no guidance) as NAME_unguided.png.",
        rich_help_panel=BATCH_PANEL)] = False,
    cache_dir: CacheOpt = None,
    one_call: Annotated[Optional[bool], typer.Option(
        "--one-call/--two-calls", help="Speed/memory trade-off of a guided step (same images up to rounding): one "
        "UNet call on all rows (faster on GPUs, more memory) or two. Default: one call on CUDA for SD 1.x/2.x, two "
        "for SDXL and on CPUs.", show_default=False, rich_help_panel="Common")] = None,
) -> MethodFlags:
    return MethodFlags(load={"cache_dir": cache_dir, "one_call": one_call}, run={"bases": bases},
                       extras=save_unguided, check=lambda jobs, config: check_jobs(jobs, bases, config))


def check_jobs(jobs: list[dict[str, Any]], bases: Optional[Path], config: Any = None) -> Optional[dict[str, Any]]:
    """What can be checked of FreeControl's own flags before a model loads: the --bases file (read once here:
    missing is 3, unusable 4; returned for ``run_job``) and each job's --subject (its condition word must be in
    the inversion prompt) and concept (without --concept or --bases, where guidance runs: a word of the
    prompt)."""
    from i2i.freecontrol.bases import read_bases_file
    from i2i.freecontrol.pipeline import check_subject, default_concept

    for job in jobs:
        check_subject(job["subject"], job["prompt"] if job["inversion_prompt"] is None else job["inversion_prompt"])
        if bases is None and not job["concept"] and getattr(config, "structure_weight", 1) > 0:
            default_concept(job["prompt"], job["subject"])
    return None if bases is None else {"bases": read_bases_file(bases)}


# The analysis flags that only `bases` takes (images of the concept) are left out of the synthesis command.
app = diffusion_app(FREECONTROL, freecontrol_flags, skip=("bases.inversion_steps", "bases.inversion_prompt"))


def bases_defaults(args: list[str]) -> Defaults:
    """The analysis settings that run (inversion steps: the synthesis setting's, as the pipeline applies them)."""
    def analysis(config: Any) -> BasesConfig:
        return dataclasses.replace(config.bases, inversion_steps=config.bases.inversion_steps or config.inversion_steps)

    model = FREECONTROL.default_model(peek_option(args, "--model", "-m"))
    return Defaults(values=analysis(FREECONTROL.model_config(model)), usual=analysis(FreeControlConfig()),
                    note="from the model")


@app.command("bases", cls=declared_command(lambda args: [Source(BasesConfig)], bases_defaults))
def bases_command(
    ctx: typer.Context,
    concept: Annotated[Optional[str], typer.Option("--concept", help="Concept to analyse, e.g. cat.")] = None,
    model: ModelOpt = None, model_config_dir: ConfigOpt = None,
    seed: Annotated[Optional[int], typer.Option("--seed", hidden=True)] = None,        # old name of --bases-seed
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", hidden=True)] = None,   # --bases-batch-size
    import_official: Annotated[Optional[Path], typer.Option(
        "--import-official", help="Convert the official pca_info.pt to an i2i bases file keyed by timestep (its "
        "DDIM step count is read from its folder or file name: step_N_sample_M_id_K/pca_info.pt, cat_step_200.pt; "
        "needs --out; no model is loaded).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the bases to this "
                                                ".safetensors file; with --show, the pictures' folder (default: "
                                                f"{SHOW_OUT}).")] = None,
    show: Annotated[Optional[Path], typer.Option(
        "--show", help="Condition image: picture its first three semantic coordinates as RGB (the paper's Fig. 2), "
        "one PNG per analysed timestep (NAME_tNNNN.png) and NAME_grid.png, in --out.", rich_help_panel=SHOW)] = None,
    inversion_prompt: Annotated[Optional[str], typer.Option(
        "--inversion-prompt", help="With --show: describes the condition image for its inversion (default: the "
        "concept).", rich_help_panel=SHOW)] = None,
    layer: Annotated[int, typer.Option("--layer", help="With --show: which self-attention layer of the feature "
                                       "block to picture (0: the first).", rich_help_panel=SHOW)] = 0,
    images: Annotated[Optional[Path], typer.Option(
        "--images", help="A folder of your own images of the concept: each is DDIM-inverted and its keys along "
        "the inverted trajectory feed the PCA instead of generated seed images (unreadable files are skipped).",
        rich_help_panel=ANALYSIS)] = None,
    from_inverted: Annotated[bool, typer.Option(
        "--from-inverted", help="Generate the seed images to the end, DDIM-invert them, and take the keys from the "
        "inverted trajectories (the paper's analysis) instead of along the generation (the official code).",
        rich_help_panel=ANALYSIS)] = False,
    overwrite: OverwriteOpt = False, cache_dir: CacheOpt = None,
    device: DeviceOpt = None, precision: DiffusionPrecisionOpt = "fp32", quiet: QuietOpt = False, json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Analysis stage only: compute (and cache) the semantic bases of --concept, or import official ones; --show
    IMAGE pictures them on a condition image."""
    changes = given_changes(ctx)
    changes.update({k: v for k, v in (("seed", seed), ("batch_size", batch_size)) if v is not None})
    options = dict(concept=concept, model=model, model_config_dir=model_config_dir, import_official=import_official,
                   out=out, show=show, inversion_prompt=inversion_prompt, layer=layer, images=images,
                   from_inverted=from_inverted, overwrite=overwrite, cache_dir=cache_dir, device=device,
                   precision=precision)
    reporter = Reporter(quiet=quiet, json_mode=json)
    run_guarded(lambda: run_bases(changes, reporter, **options), debug, reporter)


def run_bases(changes: dict[str, Any], reporter: Reporter, *, concept: Optional[str], model: Optional[str],
              model_config_dir: Optional[str], import_official: Optional[Path], out: Optional[Path],
              show: Optional[Path], inversion_prompt: Optional[str], layer: int, images: Optional[Path],
              from_inverted: bool, overwrite: bool, cache_dir: Optional[Path], device: Optional[str],
              precision: str) -> None:
    """``freecontrol bases``: import official bases, or compute (and cache) a concept's, or picture them."""
    from i2i.cli.common import quiet_libraries
    from i2i.demo.model import warn_unknown_words
    from i2i.device import check_precision, resolve_device
    from i2i.errors import UsageError
    from i2i.freecontrol.bases import read_concept_images, save_bases

    if import_official is not None:
        return import_bases(import_official, out, reporter, overwrite)
    if show is None:
        check_bases_out(out, overwrite)
    if concept is None:
        raise UsageError("give --concept (or --import-official FILE)")
    if not concept.strip():
        raise UsageError("--concept is empty: give the word of the concept, e.g. --concept cat")
    if images is not None and from_inverted:
        raise UsageError("--images and --from-inverted exclude each other")
    source = "images" if images is not None else "inverted" if from_inverted else "generated"
    picture_dir = check_show(show, out, overwrite) if show is not None else None
    model_name = FREECONTROL.default_model(model)
    full = FREECONTROL.model_config(model_name)
    # (inversion_steps None: FreeControlPipeline.semantic_bases applies the model's recommended setting)
    cfg = dataclasses.replace(full.bases, source=source, images=None if images is None else str(images),
                              **{"inversion_steps": None, **changes}).validate()
    concept_images = read_concept_images(images, reporter) if images is not None else None
    warn_unknown_words([concept], model_name, reporter)
    dev = resolve_device(device)
    check_precision(precision, dev)
    quiet_libraries()
    from i2i.freecontrol.pipeline import FreeControlPipeline

    reporter.info(f"loading {model_name}")
    pipe = FreeControlPipeline.from_pretrained(model_name, device=dev, precision=precision, cache_dir=cache_dir,
                                               config=model_config_dir)
    result = pipe.semantic_bases(concept, cfg, reporter=reporter, images=concept_images)
    if show is not None:
        show_cfg = dataclasses.replace(full, bases=cfg, **{k: changes[k] for k in ("size", "inversion_steps")
                                                           if k in changes})
        return write_pictures(pipe, result, show, picture_dir, show_cfg, inversion_prompt or concept, layer,
                              overwrite, reporter)
    if out is not None:
        save_bases(result, out)
    where = result.path or "not cached"
    reporter.info(f"{'cached' if result.cache_hit else 'computed'} bases for '{concept}': {where}")
    reporter.result({"concept": concept, "source": source, "path": str(result.path) if result.path else None,
                     "cache_hit": result.cache_hit, "out": str(out) if out else None,
                     "timesteps": len(result.timesteps),
                     "layers": list(result.layers), "components": result.n_components})


def check_bases_out(out: Optional[Path], overwrite: bool) -> None:
    """``bases --out FILE``, checked before any work: a ``.safetensors`` name (what ``--bases`` reads as an i2i
    bases file; so never an image of ``--images`` nor an official ``.pt`` input), an existing file replaced only
    with ``--overwrite``."""
    from i2i.errors import OutputError, UsageError

    if out is None:
        return
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the bases' file name (FILE.safetensors)")
    if out.suffix != ".safetensors":
        raise UsageError(f"--out {out}: give the bases file a .safetensors name (so that it can be neither an "
                         "image nor read by --bases as the official .pt format)")
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: already exists (pass --overwrite to replace it)")


def import_bases(path: Path, out: Optional[Path], reporter: Reporter, overwrite: bool = False) -> None:
    """``bases --import-official``: the official pca_info.pt written as an i2i bases file."""
    from i2i.errors import UsageError
    from i2i.freecontrol.bases import import_official, save_bases

    if out is None:
        raise UsageError("--import-official needs --out FILE.safetensors")
    check_bases_out(out, overwrite)
    result = import_official(path)
    save_bases(result, out)
    reporter.info(f"wrote {out}: {len(result.timesteps)} timesteps x {len(result.layers)} layers")
    reporter.result({"path": str(out), "timesteps": len(result.timesteps), "layers": list(result.layers),
                     "components": result.n_components, "source": "official"})


def check_show(image: Path, out: Optional[Path], overwrite: bool) -> Path:
    """The folder of ``bases --show``'s pictures, checked before any work: ``--out`` must not name a file and, without
    ``--overwrite``, must not hold the pictures of ``image`` already."""
    from i2i.errors import OutputError, UsageError
    from i2i.freecontrol.basis_pictures import existing_pictures
    from i2i.images import load_image

    folder = out or SHOW_OUT
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
