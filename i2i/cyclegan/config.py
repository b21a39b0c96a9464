"""Frozen configs for CycleGAN networks and training. Saved as JSON next to weights."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from i2i.device import MEMORY_FORMATS
from i2i.errors import UsageError

GENERATOR_ARCHS = ("resnet_9blocks", "resnet_6blocks", "unet_256", "unet_128", "dcgan")   # + resnet_<N>blocks
DISCRIMINATOR_ARCHS = ("basic", "n_layers", "pixel", "dcgan")
NORMS = ("instance", "batch", "none")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
GAN_MODES = ("lsgan", "vanilla", "hinge")
LR_POLICIES = ("linear", "step", "cosine", "constant")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")

T = TypeVar("T")


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


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of one generator. Defaults are the reference CycleGAN's (resnet_9blocks, ngf 64, instance
    norm, no dropout: 11,378,179 parameters)."""

    arch: str = "resnet_9blocks"
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    norm: str = "instance"
    dropout: bool = False
    antialias: bool = False            # resnet only: stride-1 conv + blur-pool instead of stride-2 convs (CUT)
    antialias_up: bool = False         # resnet only: fixed upsampling + conv instead of transposed convs (CUT)

    def __post_init__(self) -> None:
        if resnet_blocks(self.arch) is None:
            _check(self.arch, GENERATOR_ARCHS + ("resnet_<N>blocks",), "generator architecture")
        _check(self.norm, NORMS, "norm")
        if (self.antialias or self.antialias_up) and not self.arch.startswith("resnet"):
            raise UsageError(f"anti-aliasing is implemented for the resnet generators only, not {self.arch}")
        if self.input_nc not in (1, 3) or self.output_nc not in (1, 3):
            raise UsageError("input/output channels must be 1 or 3")

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
    2,764,737 parameters)."""

    arch: str = "basic"
    input_nc: int = 3
    ndf: int = 64
    n_layers: int = 3
    norm: str = "instance"
    antialias: bool = False            # basic/n_layers only: stride-1 conv + blur-pool instead of stride 2 (CUT)

    def __post_init__(self) -> None:
        _check(self.arch, DISCRIMINATOR_ARCHS, "discriminator architecture")
        _check(self.norm, NORMS, "norm")
        if self.antialias and self.arch not in ("basic", "n_layers"):
            raise UsageError(f"anti-aliasing is implemented for the basic/n_layers discriminators, not {self.arch}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DiscriminatorConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a CycleGAN training run. Defaults are the reference's (cycle_gan model).

    Saved as ``RUN/config.json``; ``--resume`` reloads it and only the fields in :data:`RESUMABLE_FIELDS` may
    change on resume.
    """

    dataroot: str = "builtin:shapes"
    run_dir: str = "runs/cyclegan"
    model: str = "cyclegan"             # the training method (i2i.cyclegan.methods.REGISTRY)
    options: dict[str, Any] = field(default_factory=dict)   # the method's own hyperparameters
    generator: GeneratorConfig = GeneratorConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    init_type: str = "normal"
    init_gain: float = 0.02
    gan_mode: str = "lsgan"
    lambda_A: float = 10.0
    lambda_B: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 100
    n_epochs_decay: int = 100
    lr_policy: str = "linear"
    lr_decay_iters: int = 50
    batch_size: int = 1
    load_size: int = 286
    crop_size: int = 256
    preprocess: str = "resize_and_crop"
    flip: bool = True
    serial_batches: bool = False
    phase: str = "train"
    max_dataset_size: int | None = None
    shapes_count: int = 1000
    num_workers: int = 4
    seed: int = 0
    precision: str = "fp32"
    memory_format: str = "auto"         # conv tensor layout (i2i.device.MEMORY_FORMATS): auto = channels_last on CUDA
    max_iters: int | None = None
    log_every: int = 100
    sample_every: int = 400
    save_every: int = 5000
    save_epoch_every: int = 5
    keep_checkpoints: int = 2
    log_with: str | None = None
    eval_every: int = 0                 # KID of G_A on a fixed held-out set every N iterations; keeps checkpoints/best
    eval_images: int = 100              # held-out images per domain for --eval-every
    eval_features: str = "inception"    # feature extractor for --eval-every (i2i.metrics.registry)
    inception_weights: str | None = None   # the Inception weights file (default: $I2I_INCEPTION_WEIGHTS, the cache)

    def __post_init__(self) -> None:
        from i2i.cyclegan.methods import REGISTRY

        _check(self.model, tuple(REGISTRY), "model")
        _check(self.gan_mode, GAN_MODES, "gan mode")
        _check(self.lr_policy, LR_POLICIES, "lr policy")
        _check(self.preprocess, PREPROCESS, "preprocess")
        _check(self.init_type, INIT_TYPES, "init type")
        _check(self.precision, ("fp32", "bf16", "fp16"), "precision")
        _check(self.memory_format, MEMORY_FORMATS, "--memory-format")
        from i2i.metrics.registry import EXTRACTORS

        _check(self.eval_features, EXTRACTORS, "--eval-features")
        positive = {"batch_size": self.batch_size, "crop_size": self.crop_size, "load_size": self.load_size,
                    "log_every": self.log_every, "sample_every": self.sample_every,
                    "save_every": self.save_every, "save_epoch_every": self.save_epoch_every,
                    "keep_checkpoints": self.keep_checkpoints, "shapes_count": self.shapes_count}
        for name, value in positive.items():
            if value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
        for name in ("lambda_A", "lambda_B", "lambda_identity", "lr", "n_epochs", "n_epochs_decay", "pool_size",
                     "num_workers", "init_gain"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must not be negative")
        if self.n_epochs + self.n_epochs_decay < 1:
            raise UsageError("--n-epochs + --n-epochs-decay must be at least 1")
        if self.eval_every < 0 or self.eval_images < 4:
            raise UsageError("--eval-every must not be negative and --eval-images must be at least 4")
        if self.max_iters is not None and self.max_iters < 1:
            raise UsageError("--max-iters must be at least 1")
        if "crop" in self.preprocess and self.preprocess != "crop" and self.crop_size > self.load_size:
            raise UsageError(f"--crop-size {self.crop_size} is larger than --load-size {self.load_size}")
        if not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            raise UsageError("Adam betas must be in [0, 1)")

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        data = dict(data)
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
# - an identity term of weight 20 (4 x the cycle weight 5) and Adam at 5e-4: together they keep each colour (at
#   1e-3 the colours are permuted for most of the run, a cycle-consistent wrong answer); halving the reference's
#   cycle weight (10) lets the adversarial term square the corners sooner (the lowest accuracy at two thirds
#   was 91.5-94 % in three seeds, against 93 and 88 % in two seeds with cycle 10, identity 2);
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
    "lambda_A": 5.0,
    "lambda_B": 5.0,
    "lambda_identity": 4.0,   # times lambda_A/B: the identity term keeps its weight (20), the cycle term halves
    "num_workers": 0,
    "log_every": 25,
    "sample_every": 100,
    "save_every": 100,
    "save_epoch_every": 1,
    "memory_format": "channels_last",
}
