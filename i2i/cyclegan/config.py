"""Frozen configs for CycleGAN networks and training. Saved as JSON next to weights."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from i2i.device import MEMORY_FORMATS
from i2i.errors import UsageError
from i2i.options import flag, option
from i2i.seeds import check_seed

GENERATOR_ARCHS = ("resnet_9blocks", "resnet_6blocks", "unet_256", "unet_128", "dcgan")   # + resnet_<N>blocks
DISCRIMINATOR_ARCHS = ("basic", "n_layers", "pixel", "dcgan")
NORMS = ("instance", "batch", "none")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
GAN_MODES = ("lsgan", "vanilla", "wgangp", "hinge")
LR_POLICIES = ("linear", "step", "plateau", "cosine", "constant")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")

T = TypeVar("T")

# What `translate` uses when --batch-size / --num-workers are not given (TranslateConfig.for_device,
# i2i.video.translate; measured: docs/performance.md). On a CPU one image at a time, and decoding workers only
# with at least WORKER_MIN_CORES cores: on 2 cores batches of 4 and 2 workers were 20-45 % slower.
GPU_BATCH, CPU_BATCH = 4, 1
GPU_VIDEO_BATCH, CPU_VIDEO_BATCH = 8, 4
DECODE_WORKERS, WORKER_MIN_CORES = 2, 5
# Images per direction that `eval` draws from builtin:shapes unless --limit says otherwise.
SHAPES_EVAL_LIMIT = 200


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    return cls(**data)


def resnet_blocks(arch: str) -> int | None:
    """The number of residual blocks of a ``resnet_<N>blocks`` generator (the reference names 6 and 9; any
    N >= 1 builds the same ResnetGenerator), or None for other architectures."""
    import re

    m = re.fullmatch(r"resnet_([1-9][0-9]*)blocks", arch)
    return int(m.group(1)) if m else None


def _check(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise UsageError(f"{what} {value!r}: choose one of {', '.join(choices)}")


ARCH, TRAIN, DATA = "Architecture", "Training", "Data"
RUN, EVAL, COMMON = "Run, logging and checkpoints", "Evaluation while training (best checkpoint)", "Common"


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of one generator. Defaults are the reference CycleGAN's (resnet_9blocks, ngf 64, instance
    norm, no dropout: 11,378,179 parameters)."""

    arch: str = option("resnet_9blocks", flag="--net-g", aliases=("--netG",), panel=ARCH,
                       choices=GENERATOR_ARCHS + ("resnet_<N>blocks",),
                       help="Generator architecture (resnet_<N>blocks: any number N of residual blocks).")
    input_nc: int = option(3, help="Channels of domain A: 3 or 1.", panel=ARCH)
    output_nc: int = option(3, help="Channels of domain B: 3 or 1.", panel=ARCH)
    ngf: int = option(64, help="Generator base width.", panel=ARCH)
    norm: str = option("instance", help="Normalisation in the generator and the discriminator.", panel=ARCH,
                       choices=NORMS)
    dropout: bool = option(False, help="Dropout 0.5 in the generator's residual blocks.", panel=ARCH)
    antialias: bool = option(False, panel=ARCH, help="Blur-pool downsampling in G and D: stride-1 conv + blur "
                             "instead of stride-2 convs (CUT's; resnet generators, basic/n_layers discriminators).")
    antialias_up: bool = option(False, panel=ARCH, help="Fixed-filter upsampling + conv in G instead of "
                                "transposed convs (CUT's; resnet generators).")

    def __post_init__(self) -> None:
        if resnet_blocks(self.arch) is None:
            _check(self.arch, GENERATOR_ARCHS + ("resnet_<N>blocks",), f"{flag(self, 'arch')}")
        _check(self.norm, NORMS, flag(self, "norm"))
        if (self.antialias or self.antialias_up) and not self.arch.startswith("resnet"):
            on = [flag(self, name) for name in ("antialias", "antialias_up") if getattr(self, name)]
            off = " ".join("--no-" + name[2:] for name in on)
            raise UsageError(f"{' and '.join(on)}: anti-aliasing is implemented for the resnet generators only, not "
                             f"{self.arch} (CUT and FastCUT turn it on by default): add {off}")
        if self.input_nc not in (1, 3) or self.output_nc not in (1, 3):
            raise UsageError(f"{flag(self, 'input_nc')}/{flag(self, 'output_nc')} must be 1 or 3")
        if self.ngf < 1:
            raise UsageError(f"{flag(self, 'ngf')} {self.ngf}: must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GeneratorConfig":
        return _from_dict(cls, data)

    def reversed(self) -> "GeneratorConfig":
        """The config of the generator for the opposite direction (channels swapped)."""
        return dataclasses.replace(self, input_nc=self.output_nc, output_nc=self.input_nc)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of one discriminator. Default: the 70x70 PatchGAN ("basic", 3 layers, ndf 64,
    2,764,737 parameters). ``norm`` and ``antialias`` share their flags with the generator's."""

    arch: str = option("basic", flag="--net-d", aliases=("--netD",), panel=ARCH, choices=DISCRIMINATOR_ARCHS,
                       help="Discriminator architecture (basic: the 70x70 PatchGAN).")
    input_nc: int = 3                    # set by the method from the generator's channels
    ndf: int = option(64, help="Discriminator base width.", panel=ARCH)
    n_layers: int = option(3, flag="--n-layers-d", help="Layers of --net-d n_layers.", panel=ARCH)
    norm: str = option("instance", help="Normalisation in the generator and the discriminator.", panel=ARCH,
                       choices=NORMS)
    antialias: bool = option(False, panel=ARCH, help="Blur-pool downsampling in G and D.")

    def __post_init__(self) -> None:
        _check(self.arch, DISCRIMINATOR_ARCHS, flag(self, "arch"))
        _check(self.norm, NORMS, flag(self, "norm"))
        if self.antialias and self.arch not in ("basic", "n_layers"):
            raise UsageError(f"{flag(self, 'antialias')}: anti-aliasing is implemented for the basic/n_layers "
                             f"discriminators, not {self.arch}")
        for name in ("ndf", "n_layers"):
            if getattr(self, name) < 1:
                raise UsageError(f"{flag(self, name)} {getattr(self, name)}: must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DiscriminatorConfig":
        return _from_dict(cls, data)


DEFAULT_MODEL = "cyclegan"
"""The training method of a run that names none (the only place that names it)."""

# Written at the top level of config.json before each method declared its own options (i2i.cyclegan.methods):
# CycleGAN's, moved into ``options`` when such a file is read (another method never used them).
LEGACY_CYCLEGAN_FIELDS = ("lambda_A", "lambda_B", "lambda_identity", "pool_size")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are the reference CycleGAN's.

    ``options`` holds the method's own hyperparameters (its ``Method.Options`` fields, e.g. CycleGAN's
    ``lambda_A``). Saved as ``RUN/config.json``; ``--resume`` reloads it and only the fields in
    :data:`RESUMABLE_FIELDS` may change on resume. :mod:`i2i.cyclegan.run_config` assembles a run's config (the
    method's defaults, the shapes preset, the caller's changes).
    """

    dataroot: str = "builtin:shapes"
    run_dir: str = "runs/cyclegan"
    model: str = DEFAULT_MODEL          # the training method (i2i.cyclegan.methods.REGISTRY)
    options: dict[str, Any] = field(default_factory=dict)   # the method's own hyperparameters
    generator: GeneratorConfig = GeneratorConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    init_type: str = option("normal", help="Initial weights.", choices=INIT_TYPES, panel=ARCH)
    init_gain: float = option(0.02, help="Scale of the initial weights (the std for normal).", panel=ARCH)
    gan_mode: str = option("lsgan", help="The adversarial loss (wgangp: the reference's, whose training never "
                           "calls the gradient penalty: a plain WGAN loss; hinge: not in the reference).",
                           choices=GAN_MODES, panel=TRAIN)
    lr: float = option(2e-4, help="Adam learning rate.", panel=TRAIN)
    beta1: float = option(0.5, help="Adam beta1.", panel=TRAIN)
    beta2: float = option(0.999, help="Adam beta2.", panel=TRAIN)
    n_epochs: int = option(100, help="Epochs at the initial learning rate.", panel=TRAIN)
    n_epochs_decay: int = option(100, help="Epochs of decay to 0 after them.", panel=TRAIN)
    lr_policy: str = option("linear", help="Learning-rate schedule (plateau: the reference's, on a metric it never "
                            "sets: x0.2 from epoch 8 and every 6 epochs after; constant: not in the reference).",
                            choices=LR_POLICIES, panel=TRAIN)
    lr_decay_iters: int = option(50, help="Epochs per x0.1 step of --lr-policy step.", panel=TRAIN)
    batch_size: int = option(1, help="Images per domain per iteration.", panel=TRAIN)
    load_size: int = option(286, help="Resize to this before cropping.", panel=DATA)
    crop_size: int = option(256, help="Training crop.", panel=DATA)
    preprocess: str = option("resize_and_crop", help="How images become training crops.", choices=PREPROCESS,
                             panel=DATA)
    flip: bool = option(True, help="Random horizontal flips.", panel=DATA)
    serial_batches: bool = option(False, help="Take B images in order instead of at random.", panel=DATA)
    phase: str = option("train", help="Folder prefix: <phase>A, <phase>B.", panel=DATA)
    max_dataset_size: int | None = option(None, help="Use at most this many images per domain.", panel=DATA)
    shapes_count: int = option(1000, help="Images per domain of builtin:shapes.", panel=DATA)
    num_workers: int = option(4, aliases=("--num-threads",), help="DataLoader worker processes (at most the CPU "
                              "count).", panel=DATA)
    seed: int = option(0, help="Random seed (initial weights, data order, pools).", panel=COMMON)
    precision: str = option("fp32", panel=COMMON, choices=("fp32", "bf16", "fp16", "auto"),
                            help="bf16: autocast (faster on GPUs and on CPUs with AMX or AVX-512 BF16, slower on "
                            "other CPUs); fp16: CUDA only, with a loss scaler; auto: bf16 where the device computes "
                            "it natively, else fp32. On --resume: the run's own.")
    memory_format: str = option("auto", choices=MEMORY_FORMATS, panel=RUN,
                                help="Tensor layout of the conv nets: auto is channels_last on CUDA, contiguous "
                                "elsewhere.")
    max_iters: int | None = option(None, help="Stop after this many iterations in total (saves a resumable "
                                   "checkpoint).", panel=TRAIN)
    log_every: int = option(100, aliases=("--print-freq",), help="Iterations between loss log lines.", panel=RUN)
    sample_every: int = option(400, aliases=("--display-freq",), help="Iterations between sample grids.",
                               panel=RUN)
    save_every: int = option(5000, aliases=("--save-latest-freq",), help="Iterations between resumable "
                             "checkpoints.", panel=RUN)
    save_epoch_every: int = option(5, aliases=("--save-epoch-freq",), help="Epochs between weight snapshots.",
                                   panel=RUN)
    keep_checkpoints: int = option(2, help="Resumable checkpoints kept.", panel=RUN)
    log_with: str | None = option(None, help="Also log to an accelerate tracker, e.g. tensorboard (needs that "
                                  "package).", panel=RUN)
    eval_every: int = option(0, panel=EVAL, help="Every N iterations, measure the KID of the A->B generator on a "
                             "fixed held-out set (testA/testB if the dataset has them, else a fixed subset of the "
                             "training folders; builtin:shapes: unseen shapes), log it and keep the lowest as "
                             "checkpoints/best (for translate/eval --best). 0: off; can be turned on when resuming.")
    eval_images: int = option(100, help="Held-out images per domain for --eval-every.", panel=EVAL)
    eval_features: str = option("inception", panel=EVAL,
                                help="Features for --eval-every: inception (the standard; needs its weights, "
                                "checked before training starts) or random-cnn (an offline stand-in with fixed "
                                "random weights, NOT comparable to published KIDs).")
    inception_weights: str | None = option(None, panel=EVAL, help="torch-fidelity's Inception file for "
                                            "--eval-every on offline machines; also $I2I_INCEPTION_WEIGHTS. None: "
                                            "the torch hub cache, downloaded on first use.")

    def __post_init__(self) -> None:
        for name, choices in (("gan_mode", GAN_MODES), ("lr_policy", LR_POLICIES), ("preprocess", PREPROCESS),
                              ("init_type", INIT_TYPES), ("precision", ("fp32", "bf16", "fp16", "auto")),
                              ("memory_format", MEMORY_FORMATS)):
            _check(getattr(self, name), choices, flag(self, name))
        from i2i.metrics.registry import EXTRACTORS

        _check(self.eval_features, EXTRACTORS, flag(self, "eval_features"))
        for name in ("batch_size", "crop_size", "load_size", "log_every", "sample_every", "save_every",
                     "save_epoch_every", "keep_checkpoints", "shapes_count", "lr_decay_iters"):
            if getattr(self, name) < 1:
                raise UsageError(f"{flag(self, name)} must be at least 1 (got {getattr(self, name)})")
        for name in ("lr", "n_epochs", "n_epochs_decay", "num_workers", "init_gain", "beta1", "beta2"):
            if not math.isfinite(getattr(self, name)):
                raise UsageError(f"{flag(self, name)} must be a finite number (got {getattr(self, name)})")
        for name in ("lr", "n_epochs", "n_epochs_decay", "num_workers", "init_gain"):
            if getattr(self, name) < 0:
                raise UsageError(f"{flag(self, name)} must not be negative")
        object.__setattr__(self, "seed", check_seed(self.seed, flag(self, "seed")))    # a NumPy int -> int
        if self.n_epochs + self.n_epochs_decay < 1:
            raise UsageError(f"{flag(self, 'n_epochs')} + {flag(self, 'n_epochs_decay')} must be at least 1")
        if self.eval_every < 0:
            raise UsageError(f"{flag(self, 'eval_every')} must not be negative")
        if self.eval_images < 4:
            raise UsageError(f"{flag(self, 'eval_images')} must be at least 4 (got {self.eval_images})")
        if self.max_dataset_size is not None and self.max_dataset_size < 1:
            raise UsageError(f"{flag(self, 'max_dataset_size')} must be at least 1 (got {self.max_dataset_size}); "
                             "leave it out for every image")
        if self.max_iters is not None and self.max_iters < 1:
            raise UsageError(f"{flag(self, 'max_iters')} must be at least 1")
        if "crop" in self.preprocess and self.preprocess != "crop" and self.crop_size > self.load_size:
            raise UsageError(f"{flag(self, 'crop_size')} {self.crop_size} is larger than {flag(self, 'load_size')} "
                             f"{self.load_size}")
        if not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            raise UsageError(f"Adam betas ({flag(self, 'beta1')}, {flag(self, 'beta2')}) must be in [0, 1)")

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """A config from its JSON form; files written before the methods declared their own options (CycleGAN's
        ``lambda_A``, ``lambda_B``, ``lambda_identity``, ``pool_size`` at the top level) are converted."""
        data = dict(data)
        legacy = {name: data.pop(name) for name in LEGACY_CYCLEGAN_FIELDS if name in data}
        if legacy and data.get("model", DEFAULT_MODEL) == DEFAULT_MODEL:
            data["options"] = {**legacy, **data.get("options", {})}
        data["generator"] = GeneratorConfig.from_dict(data.get("generator", {}))
        data["discriminator"] = DiscriminatorConfig.from_dict(data.get("discriminator", {}))
        return _from_dict(cls, data)


# Fields that may differ from the saved config when a run is resumed (they don't change the math so far; the
# memory format changes only the rounding, so a resume with another one is not bit-identical).
RESUMABLE_FIELDS = frozenset({"run_dir", "max_iters", "log_every", "sample_every", "save_every", "save_epoch_every",
                              "keep_checkpoints", "num_workers", "log_with", "n_epochs", "n_epochs_decay",
                              "eval_every", "eval_images", "eval_features", "inception_weights",
                              "memory_format"})

# The embedded default, aimed at a 2-core CPU learning circles -> squares within 3 minutes, also when stopped
# at two thirds of its iterations. Chosen by measurement (examples/benchmarks/shapes_preset.py; the candidates and
# their accuracies are in docs/cyclegan.md):
# - a ResNet generator with 3 blocks at ngf 24: wider than ngf 16 (which leaves squares with rounded corners) at
#   the cost of ngf 16 with 6 blocks; at 32 px three blocks already see the whole image;
# - batch norm in the generator: instance norm keeps only the sign of each colour feature relative to the white
#   background, so colours are learned slowly and drift (blue -> purple); with batch norm they pass through;
# - Adam at 5e-4 (with CycleGAN's identity term of weight 20, its shapes preset in methods/cyclegan.py): together
#   they keep each colour (at 1e-3 the colours are permuted for most of the run, a cycle-consistent wrong answer);
# - 600 iterations with the LR decaying linearly from the second of 6 epochs;
# - channels_last tensors: 7-30 % less wall time for these small nets at 32 px on a 2-core CPU (docs/performance.md).
SHAPES_PRESET: dict[str, Any] = {
    "generator": GeneratorConfig(arch="resnet_3blocks", ngf=24, norm="batch"),
    "discriminator": DiscriminatorConfig(arch="basic", ndf=16),
    "load_size": 32,
    "crop_size": 32,
    "preprocess": "none",
    "n_epochs": 1,
    "n_epochs_decay": 5,
    "shapes_count": 400,
    "batch_size": 4,
    "lr": 5e-4,
    "num_workers": 0,
    "log_every": 25,
    "sample_every": 100,
    "save_every": 100,
    "save_epoch_every": 1,
    "memory_format": "channels_last",
}
