"""``i2i cyclegan ...``: train, translate, eval, import, export. Parses flags and calls the library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from i2i.cli.common import (DebugOpt, DeviceOpt, JsonOpt, PrecisionOpt, QuietOpt, ShardOpt, SkipExistingOpt, given,
                            out_path, run_guarded, warn_precision)
from i2i.cli.options import declared_command, given_changes
from i2i.cyclegan.config import (CPU_BATCH, CPU_VIDEO_BATCH, DECODE_WORKERS, GPU_BATCH, GPU_VIDEO_BATCH, RUN,
                                 SHAPES_EVAL_LIMIT, TRAIN, WORKER_MIN_CORES)
from i2i.cyclegan.job_config import EXPORT_OPSET, EXPORT_SIZE, EvalConfig, TranslateConfig
from i2i.cyclegan.methods import REGISTRY
from i2i.video.writing import EncodeSettings
from i2i.progress import Reporter

# The library's defaults, shown by the flags below (not restated here).
TRANSLATE, EVAL, ENCODE = TranslateConfig(), EvalConfig(), EncodeSettings()

app = typer.Typer(help=f"Unpaired training (train --model: {', '.join(REGISTRY)}; CycleGAN: Zhu et al. 2017, "
                       "CUT and FastCUT: Park et al. 2020), translation of images and videos, evaluation.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

InceptionWeightsOpt = Annotated[Optional[Path], typer.Option(
    "--inception-weights", help="torch-fidelity's Inception file (weights-inception-2015-12-05-6726825d.pth) "
    "for offline machines; also $I2I_INCEPTION_WEIGHTS. Default: the torch hub cache, downloaded on first "
    "use.")]
BestOpt = Annotated[bool, typer.Option(
    "--best", help="Use the run's best checkpoint (lowest KID, kept by training with --eval-every) instead of "
    "its latest.")]

PTH_ARCH = "Architecture of a reference .pth (guessed from its weights where not given)"
NetGOpt = Annotated[Optional[str], typer.Option(
    "--net-g", "--netG", help="Generator: resnet_9blocks, resnet_6blocks, resnet_<N>blocks (any N), unet_256, "
    "unet_128, dcgan.", rich_help_panel=PTH_ARCH)]
NgfOpt = Annotated[Optional[int], typer.Option("--ngf", help="Generator base width.", rich_help_panel=PTH_ARCH)]
NormOpt = Annotated[Optional[str], typer.Option("--norm", help="instance, batch or none.",
                                                rich_help_panel=PTH_ARCH)]
DropoutOpt = Annotated[Optional[bool], typer.Option("--dropout/--no-dropout", help="Dropout 0.5 in the generator.",
                                                    rich_help_panel=PTH_ARCH)]
InputNcOpt = Annotated[Optional[int], typer.Option("--input-nc", help="Channels of domain A: 3 or 1.",
                                                   rich_help_panel=PTH_ARCH)]
OutputNcOpt = Annotated[Optional[int], typer.Option("--output-nc", help="Channels of domain B: 3 or 1.",
                                                    rich_help_panel=PTH_ARCH)]


def _gen_fields(net_g, ngf, norm, dropout, input_nc, output_nc) -> dict:
    return given(arch=net_g, ngf=ngf, norm=norm, dropout=dropout, input_nc=input_nc, output_nc=output_nc)


def _train_model(args: list[str]) -> str:
    """The method a ``train`` command line runs: --model, else on --resume the run's own, else the default."""
    from i2i.cli.options import peek_option
    from i2i.cyclegan.checkpoint import run_model
    from i2i.cyclegan.config import DEFAULT_MODEL

    model = peek_option(args, "--model")
    run_dir = peek_option(args, "--run-dir")
    if model is None and run_dir and "--resume" in args:
        model = run_model(run_dir)
    return model or DEFAULT_MODEL


def _train_sources(args: list[str]) -> list:
    """TrainConfig's flags (with the networks'), then the chosen method's own options."""
    from i2i.cli.options import Source
    from i2i.cyclegan.config import TrainConfig
    from i2i.cyclegan.methods import get_method
    from i2i.errors import UsageError

    try:
        method = [Source(get_method(_train_model(args)).Options, ("options",))]
    except UsageError:                                  # an unknown --model: reported when the command runs
        method = []
    return [Source(TrainConfig), *method]


def _train_defaults(args: list[str]):
    """What runs when a flag is not given: the method's builtin:shapes preset (the default dataset), and where
    that differs, the method's defaults for an image folder."""
    from i2i.cli.options import Defaults
    from i2i.cyclegan.run_config import default_config
    from i2i.errors import UsageError

    import dataclasses

    try:
        model = _train_model(args)
        shapes = default_config(model, shapes=True)
        folders = dataclasses.replace(default_config(model), shapes_count=shapes.shapes_count)  # (unused there)
        return Defaults(shapes, usual=folders, note="from the shapes preset", usual_label="for image folders")
    except UsageError:
        return None


@app.command(cls=declared_command(_train_sources, _train_defaults))
def train(
    ctx: typer.Context,
    dataroot: Annotated[Optional[str], typer.Argument(
        help="Folder with trainA/ and trainB/ (and testA/, testB/), or builtin:shapes (synthetic circles -> "
             "squares; its preset learns on a CPU in minutes). Default: builtin:shapes; with --resume, the run's "
             "recorded dataset.", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help=f"Training method, one of: {', '.join(REGISTRY)}. cyclegan (the default): two generators, "
        "cycle loss; cut, fastcut: one-sided A->B with PatchNCE (Park et al. 2020). --model NAME --help lists its "
        "own flags and defaults.", show_default=False)] = None,
    run_dir: Annotated[Optional[str], typer.Option(
        "--run-dir", help="Run folder: config, checkpoints, samples, log. Default: runs/<dataset name>, with "
        "-<model> for any method but cyclegan.", rich_help_panel=RUN)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --run-dir exactly where its latest "
                                         "checkpoint stopped.", rich_help_panel=RUN)] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over in a --run-dir that already holds a "
                                            "run: its checkpoints, samples, log and evaluations are deleted "
                                            "first.", rich_help_panel=RUN)] = False,
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", metavar="NAME=VALUE", help="A method option by its field name (repeatable), e.g. --option "
        "lambda_A=5 for cyclegan, --option lambda_nce=4 for cut; each option's flag, listed by --model NAME "
        "--help, does the same.", show_default=False, rich_help_panel=TRAIN)] = None,
    device: DeviceOpt = None, quiet: QuietOpt = False, json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Train an unpaired translation (a method chosen by --model) on two image folders (or builtin:shapes).

    Each default shown is what runs when the flag is not given: on builtin:shapes its preset, on image folders the
    method's reference defaults (both shown where they differ). Ctrl-C saves a resumable checkpoint and exits (130).
    """
    reporter = Reporter(quiet=quiet, json_mode=json)
    changes = given_changes(ctx)

    def go() -> None:
        from i2i.cyclegan.run_config import run_config
        from i2i.cyclegan.trainer import train as train_fn

        capped = _capped_max_iters(changes.pop("max_iters", None), reporter)
        changes.update({"max_iters": capped} if capped is not None else {})
        if "precision" in changes:
            from i2i.device import resolve_device, resolve_precision

            dev = resolve_device(device)
            changes["precision"] = resolve_precision(changes["precision"], dev)
            warn_precision(reporter, changes["precision"], dev)
        config = run_config(dataroot, run_dir, model, resume, option or (), **changes)
        result = train_fn(config, resume=resume, device=device, reporter=reporter, overwrite=overwrite)
        _report_training(result, reporter)

    run_guarded(go, debug, reporter)


def _report_training(result, reporter: Reporter) -> None:
    if result.iterations == result.start_iteration:
        reporter.info(f"nothing to do: {result.run_dir} is already at iteration {result.iterations}, at or past "
                      "where training ends (raise --max-iters, --n-epochs or --n-epochs-decay to go on; its "
                      f"config.json is left as it was); checkpoint {result.checkpoint}")
    else:
        first, last = result.start_iteration + 1, result.iterations
        span = f"iteration {last}" if first == last else f"iterations {first}-{last}"
        reporter.info(f"done: {span} in {result.seconds:.0f} s; checkpoint {result.checkpoint}")
    reporter.result({"run_dir": str(result.run_dir), "iterations": result.iterations,
                     "start_iteration": result.start_iteration,
                     "epochs": result.epochs_done, "checkpoint": str(result.checkpoint),
                     "seconds": round(result.seconds, 2), "losses": result.losses})


MAX_ITERS_ENV = "I2I_MAX_ITERS"


def _capped_max_iters(max_iters: int | None, reporter: Reporter) -> int | None:
    """``--max-iters``, capped by the environment variable I2I_MAX_ITERS when it is set (for smoke tests and
    the documentation tests, which run the documented training commands as written but briefly)."""
    import os

    from i2i.errors import UsageError

    raw = os.environ.get(MAX_ITERS_ENV, "").strip()
    if not raw:
        return max_iters
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"{MAX_ITERS_ENV}={raw!r}: must be a positive whole number of iterations")
    cap = int(raw) if max_iters is None else min(max_iters, int(raw))
    reporter.info(f"{MAX_ITERS_ENV}={raw}: training stops after at most {cap} iterations")
    return cap


def _load_any_generator(checkpoint: str, direction: str, arch_fields: dict, device, best: bool = False):
    """The library's :func:`~i2i.cyclegan.convert.load_any_generator` (one name for the tests to replace)."""
    from i2i.cyclegan.convert import load_any_generator

    return load_any_generator(checkpoint, direction, device, best, **arch_fields)


VIDEO = "Videos (docs/video.md)"
CodecOpt = Annotated[str, typer.Option("--codec", help="Video encoder: h264, hevc, vp9, av1, mpeg4 or any "
                                       "FFmpeg encoder name in PyAV.", rich_help_panel=VIDEO)]
CrfOpt = Annotated[int, typer.Option("--crf", help="Video quality for h264/hevc/vp9/av1, lower is better (h264: "
                                     "18 near-lossless, 23 its own default).", rich_help_panel=VIDEO)]
TemporalOpt = Annotated[bool, typer.Option(
    "--temporal", help="Blend each video frame with the previous output warped by the input's optical flow where "
    "the flow is reliable: less flicker (docs/video.md).", rich_help_panel=VIDEO)]


def _video_options(codec: str, crf: int, temporal: bool):
    """How clips are written (the encoder is checked by the library, before any model loads, when a clip is among
    the inputs)."""
    from i2i.video.temporal import TemporalConfig
    from i2i.video.translate import VideoOptions
    from i2i.video.writing import EncodeSettings

    return VideoOptions(EncodeSettings(codec, crf), TemporalConfig() if temporal else None)


@app.command()
def translate(
    inputs: Annotated[list[str], typer.Argument(help="Image or video files, folders (recursive), globs or "
                                                "@list.txt.")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="Run folder (uses its latest "
                                            "checkpoint), checkpoint folder, generator .safetensors, or a "
                                            "reference .pth.")],
    direction: Annotated[str, typer.Option("--direction", help="AtoB (G_A) or BtoA (G_B).")] = "AtoB",
    best: BestOpt = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (input sub-folders are kept; videos are "
                                      "written as .mp4), or for one input the output file itself, e.g. zebra.png, "
                                      "zebra.mp4.", parser=out_path)] = Path("out"),
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", help=f"Images per forward pass (default: {GPU_BATCH} on a GPU, {CPU_BATCH} on a CPU, where "
        f"batches measured slower); video frames: {GPU_VIDEO_BATCH} on a GPU, {CPU_VIDEO_BATCH} on a CPU.",
        show_default=False)] = None,
    tile: Annotated[Optional[int], typer.Option("--tile", help="Translate large images in overlapping tiles of "
                                                "this size (seams blended).")] = None,
    tile_overlap: Annotated[int, typer.Option("--tile-overlap", help="Tile overlap in pixels.")] = (
        TRANSLATE.tile_overlap),
    size: Annotated[Optional[int], typer.Option(
        "--size", help="Translate at this many px on the shorter side (e.g. the training size: 32 for the "
        "builtin:shapes preset) and resize each output back to its input's size. Default: each image as it is.",
        show_default=False)] = None,
    ext: Annotated[str, typer.Option("--ext", help="Output format extension.")] = TRANSLATE.ext,
    suffix: Annotated[str, typer.Option("--suffix", help="Appended to each output file name.")] = (
        TRANSLATE.suffix),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    num_workers: Annotated[Optional[int], typer.Option(
        "--num-workers", help=f"Background decoding processes (default: {DECODE_WORKERS} on a GPU or a CPU with "
        f"at least {WORKER_MIN_CORES} cores, else 0: decoding in the main process).", show_default=False)] = None,
    skip_existing: SkipExistingOpt = False, shard: ShardOpt = None, temporal: TemporalOpt = False,
    net_g: NetGOpt = None, ngf: NgfOpt = None, norm: NormOpt = None, dropout: DropoutOpt = None,
    input_nc: InputNcOpt = None, output_nc: OutputNcOpt = None, codec: CodecOpt = ENCODE.codec,
    crf: CrfOpt = ENCODE.crf,
    device: DeviceOpt = None, precision: PrecisionOpt = "fp32", quiet: QuietOpt = False, json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Translate images and videos (docs/video.md), each to its input's size; bad files are reported and skipped
    (exit 1). Under torchrun / accelerate launch, or with --shard, a process takes its share (docs/batch.md)."""
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        from i2i.cyclegan.translate_job import translate_inputs
        from i2i.device import check_precision, resolve_device
        from i2i.errors import batch_failure

        dev = resolve_device(device)
        prec = check_precision(precision, dev)
        warn_precision(reporter, prec, dev)
        cfg = TranslateConfig(batch_size=batch_size, tile=tile, tile_overlap=tile_overlap, size=size,
                              precision=prec, ext=ext, suffix=suffix,
                              overwrite=overwrite, num_workers=num_workers, skip_existing=skip_existing)
        fields = _gen_fields(net_g, ngf, norm, dropout, input_nc, output_nc)
        summary, result = translate_inputs(
            inputs, out, lambda: _load_any_generator(checkpoint, direction, fields, dev, best), cfg,
            _video_options(codec, crf, temporal), shard, dev, reporter)
        reporter.info(summary.line())
        reporter.result(summary.record())
        if result.failed_job(skip_existing):
            raise batch_failure(result.errors, result.failed, summary.inputs, len(result.ok))

    run_guarded(go, debug, reporter)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A reference generator checkpoint, e.g. latest_net_G_A.pth.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output .safetensors [default: next to "
                                                "FILE].")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    net_g: NetGOpt = None, ngf: NgfOpt = None, norm: NormOpt = None, dropout: DropoutOpt = None,
    input_nc: InputNcOpt = None, output_nc: OutputNcOpt = None,
    quiet: QuietOpt = False, json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Convert a reference (pytorch-CycleGAN-and-pix2pix) .pth generator into a self-describing safetensors file.

    Read with torch.load(weights_only=True): files that would run code are refused. The architecture is
    inferred from the weights; flags override it.
    """
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        from i2i.cyclegan.config import GeneratorConfig
        from i2i.cyclegan.convert import guess_generator_config, import_reference, load_reference_state

        fields = _gen_fields(net_g, ngf, norm, dropout, input_nc, output_nc)
        guessed = guess_generator_config(load_reference_state(file))
        cfg = GeneratorConfig(**{**(guessed.to_dict() if guessed else {}), **fields})
        target = out or file.with_suffix(".safetensors")
        path = import_reference(file, target, cfg, overwrite=overwrite)
        reporter.info(f"wrote {path} ({cfg.arch}, ngf {cfg.ngf}, norm {cfg.norm})")
        reporter.result({"input": str(file), "output": str(path), "config": cfg.to_dict()})

    run_guarded(go, debug, reporter)


@app.command()
def export(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="Run folder, checkpoint folder, "
                                            "generator file or reference .pth.")],
    onnx: Annotated[str, typer.Option("--onnx", help="Output .onnx file.")],
    direction: Annotated[str, typer.Option("--direction", help="AtoB (G_A) or BtoA (G_B).")] = "AtoB",
    size: Annotated[int, typer.Option("--size", help="Example input size used for tracing and checking.")] = (
        EXPORT_SIZE),
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = EXPORT_OPSET,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    net_g: NetGOpt = None, ngf: NgfOpt = None, norm: NormOpt = None, dropout: DropoutOpt = None,
    input_nc: InputNcOpt = None, output_nc: OutputNcOpt = None,
    quiet: QuietOpt = False, json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Export a generator to ONNX (dynamic batch/height/width), checked against PyTorch with onnxruntime."""
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        import torch

        from i2i.cyclegan.export import check_onnx_path, check_opset, export_onnx

        check_opset(opset)                       # before the weights are read
        check_onnx_path(onnx)
        gen, cfg = _load_any_generator(checkpoint, direction,
                                       _gen_fields(net_g, ngf, norm, dropout, input_nc, output_nc),
                                       torch.device("cpu"))
        info = export_onnx(gen, cfg, onnx, size=size, opset=opset, overwrite=overwrite)
        checked = f"max |onnx - torch| = {info['max_abs_diff']:.2e}" if info.get("checked") else "not checked"
        reporter.info(f"wrote {onnx} ({checked})")
        reporter.result({k: (str(v) if isinstance(v, Path) else v) for k, v in info.items()})

    run_guarded(go, debug, reporter)


@app.command("eval")
def eval_(
    run: Annotated[Path, typer.Argument(help="Run folder to evaluate (its latest checkpoint, or with --best its "
                                        "best one).")],
    best: BestOpt = False,
    metrics: Annotated[Optional[str], typer.Option(
        "--metrics", help="Also compute these, comma-separated: fid, kid (translated vs the real target test "
        "folder; image folders only). FID on a few hundred images is biased upwards (compare only at equal "
        "set sizes); KID is unbiased and reported with its std over subsets.")] = None,
    features: Annotated[str, typer.Option(
        "--features", help="Feature extractor for --metrics: inception (the standard; needs its weights, see "
        "--inception-weights) or random-cnn (an offline stand-in with fixed random weights: NOT comparable to "
        "published FIDs).")] = EVAL.features,
    inception_weights: InceptionWeightsOpt = None,
    resolution: Annotated[str, typer.Option(
        "--resolution", help="train: images resized as in training (e.g. 256x256); original: as they are. "
        "The summary says which.")] = EVAL.resolution,
    kid_subsets: Annotated[int, typer.Option("--kid-subsets", help="Random subsets KID is averaged over.")] = (
        EVAL.kid_subsets),
    dataroot: Annotated[Optional[str], typer.Option("--dataroot", help="Dataset with testA/testB, or "
                                                    "builtin:shapes (default: the run's own).")] = None,
    phase: Annotated[str, typer.Option("--phase", help="Folder prefix: <phase>A, <phase>B.")] = EVAL.phase,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most this many images per direction "
                                                 f"(default: all; builtin:shapes: {SHAPES_EVAL_LIMIT}).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where summary.json and grid.png go "
                                                "(default: RUN/eval; with --best RUN/eval-best).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier evaluation.")] = False,
    device: DeviceOpt = None, precision: PrecisionOpt = "fp32", quiet: QuietOpt = False, json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Cycle and identity L1 on testA/testB (B only for two-sided runs), optionally FID/KID; on
    builtin:shapes, shape/colour/position accuracy. Prints a table; --json prints the summary."""
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        from i2i.cli.eval_table import print_eval_table
        from i2i.cyclegan.evaluate import default_eval_dir, evaluate
        from i2i.device import check_precision, resolve_device

        dev = resolve_device(device)
        prec = check_precision(precision, dev)
        warn_precision(reporter, prec, dev)
        target = out or default_eval_dir(run, best)
        chosen = tuple(m.strip() for m in (metrics or "").split(",") if m.strip())
        config = EvalConfig(dataroot=dataroot, phase=phase, limit=limit, precision=prec, metrics=chosen,
                            features=features, resolution=resolution, kid_subsets=kid_subsets,
                            inception_weights=str(inception_weights) if inception_weights else None, best=best)
        summary = evaluate(run, target, config, dev, reporter, overwrite=overwrite)
        print_eval_table(summary, reporter)
        reporter.info(f"wrote {target / 'summary.json'} and {target / 'grid.png'}")
        reporter.result(summary)

    run_guarded(go, debug, reporter)
