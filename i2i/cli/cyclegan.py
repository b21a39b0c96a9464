"""``i2i cyclegan ...``: train, translate, eval, import, export. Parses flags and calls the library."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from i2i.cli.common import (PRECISION_HELP, DebugOpt, DeviceOpt, JsonOpt, PrecisionOpt, QuietOpt, SeedOpt, given,
                            run_guarded, warn_precision)
from i2i.progress import Reporter

app = typer.Typer(help="CycleGAN (Zhu et al. 2017): unpaired training and translation in both directions.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

ARCH = "Architecture"
TRAIN = "Training (reference defaults)"
DATA = "Data"
RUN = "Run, logging and checkpoints"
CUT = "CUT / FastCUT (--model cut|fastcut)"
EVAL = "Evaluation while training (best checkpoint)"

InceptionWeightsOpt = Annotated[Optional[Path], typer.Option(
    "--inception-weights", help="torch-fidelity's Inception file (weights-inception-2015-12-05-6726825d.pth) "
    "for offline machines; also $I2I_INCEPTION_WEIGHTS. Default: the torch hub cache, downloaded on first "
    "use.")]
BestOpt = Annotated[bool, typer.Option(
    "--best", help="Use the run's best checkpoint (lowest KID, kept by training with --eval-every) instead of "
    "its latest.")]

NetGOpt = Annotated[Optional[str], typer.Option(
    "--net-g", "--netG", help="Generator: resnet_9blocks (default), resnet_6blocks, resnet_<N>blocks (any N), "
    "unet_256, unet_128, dcgan.",
    rich_help_panel=ARCH)]
NgfOpt = Annotated[Optional[int], typer.Option("--ngf", help="Generator base width (default: 64).",
                                               rich_help_panel=ARCH)]
NormOpt = Annotated[Optional[str], typer.Option("--norm", help="instance (default), batch or none.",
                                                rich_help_panel=ARCH)]
DropoutOpt = Annotated[Optional[bool], typer.Option(
    "--dropout/--no-dropout", help="Dropout 0.5 in the generator (default: off, as CycleGAN's reference).",
    rich_help_panel=ARCH)]
InputNcOpt = Annotated[Optional[int], typer.Option("--input-nc", help="Channels of domain A: 3 or 1 "
                                                   "(default: 3).", rich_help_panel=ARCH)]
OutputNcOpt = Annotated[Optional[int], typer.Option("--output-nc", help="Channels of domain B: 3 or 1 "
                                                    "(default: 3).", rich_help_panel=ARCH)]


def _gen_fields(net_g, ngf, norm, dropout, input_nc, output_nc) -> dict:
    return given(arch=net_g, ngf=ngf, norm=norm, dropout=dropout, input_nc=input_nc, output_nc=output_nc)


@app.command()
def train(
    dataroot: Annotated[Optional[str], typer.Argument(
        help="Folder with trainA/ and trainB/ (and testA/, testB/), or builtin:shapes (synthetic circles -> "
             "squares; its preset, used for every flag not given, learns on a CPU in minutes). Default: builtin:shapes; with --resume, "
             "the run's recorded dataset.", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Training method: cyclegan (default; two generators, cycle loss), cut or fastcut "
        "(one-sided A->B with PatchNCE; Park et al. 2020).", show_default=False)] = None,
    run_dir: Annotated[Optional[str], typer.Option(
        "--run-dir", help="Run folder: config, checkpoints, samples, log (default: runs/<dataset name>, "
        "runs/<dataset name>-<model> for cut and fastcut).", rich_help_panel=RUN)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --run-dir exactly where its latest "
                                         "checkpoint stopped.", rich_help_panel=RUN)] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over in a --run-dir that already holds a "
                                            "run (its checkpoints are replaced).", rich_help_panel=RUN)] = False,
    net_g: NetGOpt = None, ngf: NgfOpt = None, norm: NormOpt = None, dropout: DropoutOpt = None,
    input_nc: InputNcOpt = None, output_nc: OutputNcOpt = None,
    net_d: Annotated[Optional[str], typer.Option("--net-d", "--netD", help="Discriminator: basic (70x70 "
                                                 "PatchGAN, default), n_layers, pixel, dcgan.",
                                                 rich_help_panel=ARCH)] = None,
    ndf: Annotated[Optional[int], typer.Option("--ndf", help="Discriminator base width (default: 64).",
                                               rich_help_panel=ARCH)] = None,
    n_layers_d: Annotated[Optional[int], typer.Option("--n-layers-d", help="Layers for --net-d n_layers "
                                                      "(default: 3).", rich_help_panel=ARCH)] = None,
    init_type: Annotated[Optional[str], typer.Option("--init-type", help="normal (default), xavier, kaiming, "
                                                     "orthogonal.", rich_help_panel=ARCH)] = None,
    init_gain: Annotated[Optional[float], typer.Option("--init-gain", help="(default: 0.02)",
                                                       rich_help_panel=ARCH)] = None,
    gan_mode: Annotated[Optional[str], typer.Option("--gan-mode", help="lsgan (default), vanilla, hinge.",
                                                    rich_help_panel=TRAIN)] = None,
    lambda_a: Annotated[Optional[float], typer.Option("--lambda-a", help="Cycle loss weight A->B->A "
                                                      "(default: 10).", rich_help_panel=TRAIN)] = None,
    lambda_b: Annotated[Optional[float], typer.Option("--lambda-b", help="Cycle loss weight B->A->B "
                                                      "(default: 10).", rich_help_panel=TRAIN)] = None,
    lambda_identity: Annotated[Optional[float], typer.Option(
        "--lambda-identity", help="Identity loss, relative to the cycle weight (default: 0.5).",
        rich_help_panel=TRAIN)] = None,
    pool_size: Annotated[Optional[int], typer.Option("--pool-size", help="Image history for the "
                                                     "discriminators; 0 disables (default: 50).",
                                                     rich_help_panel=TRAIN)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate (default: 0.0002).",
                                                rich_help_panel=TRAIN)] = None,
    beta1: Annotated[Optional[float], typer.Option("--beta1", help="(default: 0.5)", rich_help_panel=TRAIN)] = None,
    beta2: Annotated[Optional[float], typer.Option("--beta2", help="(default: 0.999)",
                                                   rich_help_panel=TRAIN)] = None,
    n_epochs: Annotated[Optional[int], typer.Option("--n-epochs", help="Epochs at the initial LR "
                                                    "(default: 100).", rich_help_panel=TRAIN)] = None,
    n_epochs_decay: Annotated[Optional[int], typer.Option("--n-epochs-decay", help="Epochs of linear decay to 0 "
                                                          "(default: 100).", rich_help_panel=TRAIN)] = None,
    lr_policy: Annotated[Optional[str], typer.Option("--lr-policy", help="linear (default), step, cosine, "
                                                     "constant.", rich_help_panel=TRAIN)] = None,
    lr_decay_iters: Annotated[Optional[int], typer.Option("--lr-decay-iters", help="Epochs per x0.1 step for "
                                                          "--lr-policy step (default: 50).",
                                                          rich_help_panel=TRAIN)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="(default: 1)",
                                                      rich_help_panel=TRAIN)] = None,
    max_iters: Annotated[Optional[int], typer.Option("--max-iters", help="Stop after this many iterations in "
                                                     "total (saves a resumable checkpoint).",
                                                     rich_help_panel=TRAIN)] = None,
    load_size: Annotated[Optional[int], typer.Option("--load-size", help="Resize to this before cropping "
                                                     "(default: 286).", rich_help_panel=DATA)] = None,
    crop_size: Annotated[Optional[int], typer.Option("--crop-size", help="Training crop (default: 256).",
                                                     rich_help_panel=DATA)] = None,
    preprocess: Annotated[Optional[str], typer.Option(
        "--preprocess", help="resize_and_crop (default), crop, scale_width, scale_width_and_crop, none.",
        rich_help_panel=DATA)] = None,
    no_flip: Annotated[bool, typer.Option("--no-flip", help="No random horizontal flips.",
                                          rich_help_panel=DATA)] = False,
    serial_batches: Annotated[bool, typer.Option("--serial-batches", help="Take B images in order instead of at "
                                                 "random.", rich_help_panel=DATA)] = False,
    phase: Annotated[Optional[str], typer.Option("--phase", help="Folder prefix: <phase>A, <phase>B "
                                                 "(default: train).", rich_help_panel=DATA)] = None,
    max_dataset_size: Annotated[Optional[int], typer.Option("--max-dataset-size", help="Use at most this many "
                                                            "images per domain.", rich_help_panel=DATA)] = None,
    shapes_count: Annotated[Optional[int], typer.Option("--shapes-count", help="Images per domain for "
                                                        "builtin:shapes (its preset: 400).",
                                                        rich_help_panel=DATA)] = None,
    num_workers: Annotated[Optional[int], typer.Option("--num-workers", "--num-threads", help="DataLoader "
                                                       "workers (default: 4).", rich_help_panel=DATA)] = None,
    log_every: Annotated[Optional[int], typer.Option("--log-every", "--print-freq", help="Iterations between "
                                                     "loss log lines (default: 100).", rich_help_panel=RUN)] = None,
    sample_every: Annotated[Optional[int], typer.Option("--sample-every", "--display-freq", help="Iterations "
                                                        "between sample grids (default: 400).",
                                                        rich_help_panel=RUN)] = None,
    save_every: Annotated[Optional[int], typer.Option("--save-every", "--save-latest-freq", help="Iterations "
                                                      "between resumable checkpoints (default: 5000).",
                                                      rich_help_panel=RUN)] = None,
    save_epoch_every: Annotated[Optional[int], typer.Option("--save-epoch-every", "--save-epoch-freq",
                                                            help="Epochs between weight snapshots (default: 5).",
                                                            rich_help_panel=RUN)] = None,
    keep_checkpoints: Annotated[Optional[int], typer.Option("--keep-checkpoints", help="Resumable checkpoints "
                                                            "kept (default: 2).", rich_help_panel=RUN)] = None,
    memory_format: Annotated[Optional[str], typer.Option(
        "--memory-format", help="Tensor layout of the conv nets: auto (channels_last on CUDA, contiguous "
        "elsewhere), channels_last or contiguous. Default: auto (builtin:shapes: channels_last, faster there "
        "on CPU).", rich_help_panel=RUN)] = None,
    log_with: Annotated[Optional[str], typer.Option("--log-with", help="Also log to an accelerate tracker, e.g. "
                                                    "tensorboard (needs that package).",
                                                    rich_help_panel=RUN)] = None,
    eval_every: Annotated[Optional[int], typer.Option(
        "--eval-every", help="Every N iterations, measure the KID of the A->B generator on a fixed held-out set "
        "(testA/testB if the dataset has them, else a fixed subset of the training folders; builtin:shapes: "
        "unseen shapes), log it to log.jsonl and the tracker, and keep the lowest as checkpoints/best (for "
        "translate/eval --best). Default: 0 (off); can be turned on when resuming.", rich_help_panel=EVAL)] = None,
    eval_images: Annotated[Optional[int], typer.Option(
        "--eval-images", help="Held-out images per domain for --eval-every (default: 100).",
        rich_help_panel=EVAL)] = None,
    eval_features: Annotated[Optional[str], typer.Option(
        "--eval-features", help="Features for --eval-every: inception (the standard; needs its weights, checked "
        "before training starts) or random-cnn (an offline stand-in with fixed random weights, NOT comparable "
        "to published KIDs). Default: inception.", rich_help_panel=EVAL)] = None,
    inception_weights: Annotated[Optional[Path], typer.Option(
        "--inception-weights", help="torch-fidelity's Inception file for --eval-every on offline machines; also "
        "$I2I_INCEPTION_WEIGHTS. Default: the torch hub cache, downloaded on first use.",
        rich_help_panel=EVAL)] = None,
    lambda_gan: Annotated[Optional[float], typer.Option("--lambda-gan", help="GAN loss weight (default: 1).",
                                                        rich_help_panel=CUT)] = None,
    lambda_nce: Annotated[Optional[float], typer.Option("--lambda-nce", help="PatchNCE weight (default: cut 1, "
                                                        "fastcut 10).", rich_help_panel=CUT)] = None,
    nce_idt: Annotated[Optional[bool], typer.Option("--nce-idt/--no-nce-idt", help="Identity NCE on B -> G(B) "
                                                    "(default: on for cut, off for fastcut).",
                                                    show_default=False, rich_help_panel=CUT)] = None,
    flip_equivariance: Annotated[Optional[bool], typer.Option(
        "--flip-equivariance/--no-flip-equivariance", help="Flip G's input at random and its NCE features back "
        "(default: off for cut, on for fastcut).", show_default=False, rich_help_panel=CUT)] = None,
    nce_layers: Annotated[Optional[str], typer.Option("--nce-layers", help="Generator layer indices for PatchNCE "
                                                      "(default: 0,4,8,12,16).", rich_help_panel=CUT)] = None,
    num_patches: Annotated[Optional[int], typer.Option("--num-patches", help="Locations sampled per layer "
                                                       "(default: 256).", rich_help_panel=CUT)] = None,
    nce_t: Annotated[Optional[float], typer.Option("--nce-t", help="PatchNCE temperature (default: 0.07).",
                                                   rich_help_panel=CUT)] = None,
    netf_nc: Annotated[Optional[int], typer.Option("--netf-nc", help="Width of the projection MLP F "
                                                   "(default: 256).", rich_help_panel=CUT)] = None,
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", metavar="NAME=VALUE", help="A method option (repeatable), e.g. --option lambda_nce=4: "
        "reaches every option of --model, also those of a newly registered method.", show_default=False,
        rich_help_panel=TRAIN)] = None,
    nce_all_negatives: Annotated[Optional[bool], typer.Option(
        "--nce-all-negatives/--no-nce-all-negatives", help="Take negatives from every image of the batch, not "
        "only the same image (default: off).", show_default=False, rich_help_panel=CUT)] = None,
    antialias: Annotated[Optional[bool], typer.Option(
        "--antialias/--no-antialias", help="Blur-pool downsampling in G and D (default: on for cut/fastcut, off "
        "for cyclegan).", show_default=False, rich_help_panel=ARCH)] = None,
    antialias_up: Annotated[Optional[bool], typer.Option(
        "--antialias-up/--no-antialias-up", help="Fixed-filter upsampling + conv in G instead of transposed "
        "convs (default: on for cut/fastcut, off for cyclegan).", show_default=False,
        rich_help_panel=ARCH)] = None,
    device: DeviceOpt = None, precision: Annotated[Optional[str], typer.Option(
        "--precision", help=PRECISION_HELP + " Default: fp32 (on --resume: the run's own).",
        rich_help_panel="Common")] = None,
    seed: SeedOpt = None, quiet: QuietOpt = False, json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Train CycleGAN, CUT or FastCUT (--model) on two unpaired image folders (or builtin:shapes).

    Defaults are each method's reference defaults. Ctrl-C saves a resumable checkpoint and exits (130).
    """
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        from i2i.cyclegan.run_config import run_config
        from i2i.cyclegan.trainer import train as train_fn

        precision_ = precision
        if precision is not None:
            from i2i.device import resolve_device, resolve_precision

            dev = resolve_device(device)
            precision_ = resolve_precision(precision, dev)
            warn_precision(reporter, precision_, dev)
        options = given(lambda_gan=lambda_gan, lambda_nce=lambda_nce, nce_idt=nce_idt,
                        flip_equivariance=flip_equivariance, nce_layers=nce_layers, num_patches=num_patches,
                        nce_t=nce_t, netf_nc=netf_nc, nce_all_negatives=nce_all_negatives)
        changes = given(
            init_type=init_type, init_gain=init_gain, gan_mode=gan_mode, lambda_A=lambda_a, lambda_B=lambda_b,
            lambda_identity=lambda_identity, pool_size=pool_size, lr=lr, beta1=beta1, beta2=beta2,
            n_epochs=n_epochs, n_epochs_decay=n_epochs_decay, lr_policy=lr_policy,
            lr_decay_iters=lr_decay_iters, batch_size=batch_size, max_iters=_capped_max_iters(max_iters, reporter),
            load_size=load_size, crop_size=crop_size, preprocess=preprocess,
            flip=False if no_flip else None, serial_batches=True if serial_batches else None,
            phase=phase, max_dataset_size=max_dataset_size, shapes_count=shapes_count,
            num_workers=num_workers, log_every=log_every, sample_every=sample_every,
            save_every=save_every, save_epoch_every=save_epoch_every, keep_checkpoints=keep_checkpoints,
            log_with=log_with, seed=seed, precision=precision_, memory_format=memory_format,
            eval_every=eval_every, eval_images=eval_images, eval_features=eval_features,
            inception_weights=str(inception_weights) if inception_weights else None)
        config = run_config(
            dataroot, run_dir, model, resume, option or (), **changes,
            generator={**_gen_fields(net_g, ngf, norm, dropout, input_nc, output_nc),
                       **given(antialias=antialias, antialias_up=antialias_up)},
            discriminator=given(arch=net_d, ndf=ndf, n_layers=n_layers_d, norm=norm, antialias=antialias),
            options=options)
        result = train_fn(config, resume=resume, device=device, reporter=reporter, overwrite=overwrite)
        if result.iterations == result.start_iteration:
            reporter.info(f"nothing to do: {result.run_dir} is already at iteration {result.iterations}, where "
                          "training ends (raise --max-iters, --n-epochs or --n-epochs-decay to go on); "
                          f"checkpoint {result.checkpoint}")
        else:
            first, last = result.start_iteration + 1, result.iterations
            span = f"iteration {last}" if first == last else f"iterations {first}-{last}"
            reporter.info(f"done: {span} in {result.seconds:.0f} s; checkpoint {result.checkpoint}")
        reporter.result({"run_dir": str(result.run_dir), "iterations": result.iterations,
                         "start_iteration": result.start_iteration,
                         "epochs": result.epochs_done, "checkpoint": str(result.checkpoint),
                         "seconds": round(result.seconds, 2), "losses": result.losses})

    run_guarded(go, debug, reporter)


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
    """A generator from a run/checkpoint folder (``best``: the run's best checkpoint), a generator file, or a
    reference .pth (with flags)."""
    from i2i.cyclegan.checkpoint import load_generator, resolve_generator_file
    from i2i.cyclegan.config import GeneratorConfig
    from i2i.cyclegan.convert import generator_from_reference, guess_generator_config, load_reference_state
    from i2i.errors import UsageError

    path = resolve_generator_file(checkpoint, direction, best)
    if path.suffix in (".pth", ".pt"):
        guessed = guess_generator_config(load_reference_state(path))
        cfg = GeneratorConfig(**{**(guessed.to_dict() if guessed else {}), **arch_fields})
        return generator_from_reference(path, cfg).to(device).eval(), cfg
    if arch_fields:
        raise UsageError("architecture flags (--net-g, --ngf, ...) are only for reference .pth files; "
                         f"{path.name} describes its own architecture")
    return load_generator(path, device)


VIDEO = "Videos (docs/video.md)"
CodecOpt = Annotated[str, typer.Option("--codec", help="Video encoder: h264 (default), hevc, vp9, av1, mpeg4 or any "
                                       "FFmpeg encoder name in PyAV.", rich_help_panel=VIDEO)]
CrfOpt = Annotated[int, typer.Option("--crf", help="Video quality for h264/hevc/vp9/av1, lower is better (h264: "
                                     "18 near-lossless, 23 its own default).", rich_help_panel=VIDEO)]
TemporalOpt = Annotated[bool, typer.Option(
    "--temporal", help="Blend each video frame with the previous output warped by the input's optical flow where "
    "the flow is reliable: less flicker (docs/video.md).", rich_help_panel=VIDEO)]


def _video_options(videos, codec: str, crf: int, temporal: bool):
    """The video flags checked (the encoder exists, --crf in range) before any model is loaded; None without
    videos."""
    if not videos:
        return None
    from i2i.video.temporal import TemporalConfig
    from i2i.video.translate import VideoOptions
    from i2i.video.writing import EncodeSettings

    settings = EncodeSettings(codec, crf)
    settings.encoder  # noqa: B018 - raises UsageError for an unknown encoder
    return VideoOptions(settings, TemporalConfig() if temporal else None)


def _translate_videos(videos, targets, gen, gen_cfg, cfg, options, device, reporter, result):
    """Video inputs of ``translate`` (found by ``i2i.video.split_videos``) through ``i2i.video.translate_videos``,
    added to the images' ``result`` (None: no images)."""
    from i2i.cyclegan.translator import TranslateResult

    if not videos:
        return result or TranslateResult()
    from i2i.video.translate import translate_videos

    return translate_videos(videos, targets, gen, gen_cfg, cfg, options, device, reporter, result)


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
                                      "zebra.mp4.")] = Path("out"),
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", help="Images per forward pass (default: 4 on a GPU, 1 on a CPU, where batches measured "
        "slower); video frames: 8 on a GPU, 4 on a CPU.", show_default=False)] = None,
    tile: Annotated[Optional[int], typer.Option("--tile", help="Translate large images in overlapping tiles of "
                                                "this size (seams blended).")] = None,
    tile_overlap: Annotated[int, typer.Option("--tile-overlap", help="Tile overlap in pixels.")] = 32,
    size: Annotated[Optional[int], typer.Option(
        "--size", help="Translate at this many px on the shorter side (e.g. the training size: 32 for the "
        "builtin:shapes preset) and resize each output back to its input's size. Default: each image as it is.",
        show_default=False)] = None,
    ext: Annotated[str, typer.Option("--ext", help="Output format extension.")] = ".png",
    suffix: Annotated[str, typer.Option("--suffix", help="Appended to each output file name.")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    num_workers: Annotated[Optional[int], typer.Option(
        "--num-workers", help="Background decoding processes (default: 2 on a GPU or a CPU with more than 4 "
        "cores, else 0: decoding in the main process).", show_default=False)] = None,
    codec: CodecOpt = "h264", crf: CrfOpt = 18, temporal: TemporalOpt = False,
    net_g: NetGOpt = None, ngf: NgfOpt = None, norm: NormOpt = None, dropout: DropoutOpt = None,
    input_nc: InputNcOpt = None, output_nc: OutputNcOpt = None,
    device: DeviceOpt = None, precision: PrecisionOpt = "fp32", quiet: QuietOpt = False, json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Translate every input image or video; each output has its input's size (a video also its frame count,
    rate and audio: docs/video.md). Bad files are reported and skipped; exit 1 if any failed."""
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        from i2i.cyclegan.translator import TranslateConfig, translate_images
        from i2i.device import check_precision, resolve_device
        from i2i.errors import PartialFailure
        from i2i.images import InputItem, expand_inputs, names_one_file, output_path, refuse_if_all_exist
        from i2i.video import split_videos, video_targets

        dev = resolve_device(device)
        prec = check_precision(precision, dev)
        warn_precision(reporter, prec, dev)
        cfg = TranslateConfig(batch_size=batch_size, tile=tile, tile_overlap=tile_overlap, size=size,
                              precision=prec, ext=ext if ext.startswith(".") else "." + ext, suffix=suffix, overwrite=overwrite,
                              num_workers=num_workers)
        items, videos = split_videos(expand_inputs(inputs))      # videos: _translate_videos below
        video_out, video_opts = video_targets(videos, out, suffix, len(items)), _video_options(videos, codec, crf,
                                                                                                temporal)
        out_dir = out
        if items and names_one_file(out, len(items) + len(videos), "outputs"):  # --out zebra.png: that file
            items = [InputItem(items[0].path, Path(out.stem))]
            out_dir = out.parent
            cfg = dataclasses.replace(cfg, ext=out.suffix, suffix="")
        refuse_if_all_exist([output_path(it, out_dir, cfg.suffix, cfg.ext) for it in items] + video_out, overwrite)
        gen, gen_cfg = _load_any_generator(checkpoint, direction,
                                           _gen_fields(net_g, ngf, norm, dropout, input_nc, output_nc), dev, best)
        result = translate_images(items, gen, gen_cfg, out_dir, cfg, dev, reporter) if items else None
        result = _translate_videos(videos, video_out, gen, gen_cfg, cfg, video_opts, dev, reporter, result)
        total = len(items) + len(videos)
        reporter.info(f"translated {len(result.ok)} of {total} input(s) into {out}")
        if result.failed:
            raise PartialFailure(f"{len(result.failed)} of {total} input(s) failed", result.failed)

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
    onnx: Annotated[Path, typer.Option("--onnx", help="Output .onnx file.")],
    direction: Annotated[str, typer.Option("--direction", help="AtoB (G_A) or BtoA (G_B).")] = "AtoB",
    size: Annotated[int, typer.Option("--size", help="Example input size used for tracing and checking.")] = 256,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 17,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    net_g: NetGOpt = None, ngf: NgfOpt = None, norm: NormOpt = None, dropout: DropoutOpt = None,
    input_nc: InputNcOpt = None, output_nc: OutputNcOpt = None,
    quiet: QuietOpt = False, json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Export a generator to ONNX (dynamic batch/height/width), checked against PyTorch with onnxruntime."""
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        import torch

        from i2i.cyclegan.export import export_onnx

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
        "--metrics", help="Also compute these, comma-separated: fid, kid, domain (translated vs the real target "
        "test folder; image folders only). FID on a few hundred images is biased upwards (compare only at equal "
        "set sizes); KID is unbiased and reported with its std over subsets.")] = None,
    features: Annotated[str, typer.Option(
        "--features", help="Feature extractor for --metrics: inception (the standard; needs its weights, see "
        "--inception-weights) or random-cnn (an offline stand-in with fixed random weights: NOT comparable to "
        "published FIDs).")] = "inception",
    inception_weights: InceptionWeightsOpt = None,
    resolution: Annotated[str, typer.Option(
        "--resolution", help="train: images resized as in training (e.g. 256x256); original: as they are. "
        "The summary says which.")] = "train",
    kid_subsets: Annotated[int, typer.Option("--kid-subsets", help="Random subsets KID is averaged over.")] = 100,
    dataroot: Annotated[Optional[str], typer.Option("--dataroot", help="Dataset with testA/testB, or "
                                                    "builtin:shapes (default: the run's own).")] = None,
    phase: Annotated[str, typer.Option("--phase", help="Folder prefix: <phase>A, <phase>B.")] = "test",
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most this many images per direction "
                                                 "(default: all; builtin:shapes: 200).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where summary.json and grid.png go "
                                                "(default: RUN/eval; with --best RUN/eval-best).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier evaluation.")] = False,
    device: DeviceOpt = None, precision: PrecisionOpt = "fp32", quiet: QuietOpt = False, json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Cycle and identity L1 on testA/testB (B only for two-sided runs), optionally FID/KID/domain score; on
    builtin:shapes, shape/colour/position accuracy. Prints a table; --json prints the summary."""
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        from i2i.cli.eval_table import print_eval_table
        from i2i.cyclegan.evaluate import EvalConfig, default_eval_dir, evaluate
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
