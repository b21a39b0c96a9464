"""The method contract: what a training method (CycleGAN, CUT, ...) provides to the one training loop.

The loop (:mod:`i2i.cyclegan.loop`) owns data, epochs, signals, progress, logging, sample grids, NaN checks,
checkpoints, exact resume, DDP and rank-0 writes. A :class:`Method` owns its networks, optimizers, LR
schedulers, losses and one training step. A new method is one module with a :class:`Method` subclass plus one
line in :data:`i2i.cyclegan.methods.REGISTRY`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from i2i.cyclegan.config import TrainConfig
from i2i.cyclegan.context import StepContext
from i2i.cyclegan.data import Preprocess


class Saved(NamedTuple):
    """One network of a checkpoint: saved as ``<name>.safetensors`` with ``fmt`` and ``config`` in its metadata."""

    net: nn.Module
    fmt: str
    config: dict[str, Any]


def lr_lambda(config: TrainConfig):
    """Multiplicative LR factor per epoch index e (0-based), as the reference's schedulers."""
    if config.lr_policy == "linear":
        return lambda e: 1.0 - max(0, e + 1 - config.n_epochs) / float(config.n_epochs_decay + 1)
    if config.lr_policy == "step":
        return lambda e: 0.1 ** (e // config.lr_decay_iters)
    if config.lr_policy == "plateau":
        return _plateau(config.lr)
    if config.lr_policy == "cosine":
        t_max = max(config.n_epochs, 1)
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * (e % (2 * t_max)) / t_max))
    return lambda e: 1.0


def _plateau(lr: float):
    """The reference's ``plateau`` policy: ReduceLROnPlateau (factor 0.2, patience 5, relative threshold 0.01, eps
    1e-8) stepped once an epoch on a metric the CycleGAN and CUT models never set (always 0): the first step sets
    the best value, every later one is "no better", so the LR drops at steps 7, 13, 19, ... until a drop would be
    below eps."""
    def factor(e: int) -> float:
        f = 1.0
        for _ in range(max(0, (e - 1) // 6)):
            if lr * f * 0.8 <= 1e-8:
                break
            f *= 0.2
        return f
    return factor


def make_adam(params, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam with the fused kernel where available (same math, fewer passes over memory)."""
    kwargs = dict(lr=config.lr, betas=(config.beta1, config.beta2))
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, foreach=device.type != "cpu", **kwargs)


@dataclass(frozen=True)
class NoOptions:
    """The options of a method that has none."""


class Method:
    """Base class of a training method. Subclasses set the class attributes and implement the hooks below.

    Construction (``__init__(config, ctx)``) builds and initialises the networks in a fixed order (the global
    torch seed is set just before, so the order fixes the initial weights), places them with ``ctx.place`` and
    builds optimizers and schedulers. :meth:`step` runs its networks with ``ctx.forward`` and optimises with
    ``ctx.backward``; it never handles devices, mixed precision or DDP itself.
    """

    name: ClassVar[str] = ""
    #: losses returned by :meth:`step`, in order; logged as the keys of ``log.jsonl``
    loss_names: ClassVar[tuple[str, ...]] = ()
    #: losses shown in the progress line
    status_names: ClassVar[tuple[str, ...]] = ()
    #: the method's own hyperparameters: a frozen dataclass whose fields are declared with
    #: :func:`i2i.options.option` (they become ``--flags`` of ``i2i cyclegan train --model NAME``); stored in
    #: ``TrainConfig.options``
    Options: ClassVar[type] = NoOptions
    #: TrainConfig fields whose default differs for this method (e.g. epochs, init); ``"options"``: option defaults
    defaults: ClassVar[dict[str, Any]] = {}
    #: builtin:shapes only: fields applied on top of the shared shapes preset (config.SHAPES_PRESET)
    shapes_preset: ClassVar[dict[str, Any]] = {}
    #: an epoch leaves out a last batch shorter than --batch-size (the reference's DataLoader drop_last)
    drop_last: ClassVar[bool] = False

    def __init__(self, config: TrainConfig, ctx: StepContext) -> None:
        self.config, self.ctx = config, ctx
        self.opt = self.options_from(config.options)

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        """The method's option values when none is given: its ``Options`` defaults, then ``defaults["options"]``."""
        return {**dataclasses.asdict(cls.Options()), **cls.defaults.get("options", {})}

    @classmethod
    def options_from(cls, options: dict[str, Any]) -> Any:
        """``options`` (a possibly partial dict, e.g. ``TrainConfig.options``) over the defaults, as an ``Options``
        instance; raises :class:`~i2i.errors.UsageError` for an unknown or invalid option."""
        from i2i.errors import UsageError
        from i2i.options import flag

        known = {f.name for f in dataclasses.fields(cls.Options)}
        unknown = set(options) - known
        if unknown:
            name = sorted(unknown)[0]
            near = next((k for k in sorted(known) if k.lower() == name.lower()), None)
            hint = f" (did you mean {near!r}? option names are case-sensitive)" if near else ""
            raise UsageError(f"option {', '.join(map(repr, sorted(unknown)))}: not an option of --model "
                             f"{cls.name}{hint}; its options: {', '.join(sorted(known))}")
        from i2i.options import field_types

        types = field_types(cls.Options)
        options = {k: float(v) if types.get(k) is float and type(v) is int else v   # 2 from Python: 2.0, as the
                   for k, v in options.items()}                                     # flag would give
        values = cls.Options(**{**cls.default_options(), **options})
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            if isinstance(value, float) and not math.isfinite(value):      # a NaN weight would only show as a NaN loss
                raise UsageError(f"{flag(values, f.name)} (--option {f.name}) must be a finite number (got {value})")
        return values

    @classmethod
    def check(cls, config: "TrainConfig", resume: bool = False) -> None:
        """Refuse (:class:`~i2i.errors.UsageError`) a config this method cannot train, before any data is read:
        unknown or invalid options, and what a method adds (override and call ``super().check``). ``resume``: the
        config is a recorded run's, which a rule added since must not lock out (warn instead)."""
        cls.options_from(config.options)

    # ---- what a checkpoint holds
    def networks(self) -> dict[str, Saved]:
        """Every network saved in a checkpoint, by file name (``G_A`` is the A -> B generator)."""
        raise NotImplementedError

    def train_state(self) -> dict[str, dict[str, Any]]:
        """``{"optimizers": {...}, "schedulers": {...}, "pools": {...}}``: restored exactly on resume."""
        raise NotImplementedError

    # ---- training
    def step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> torch.Tensor:
        """One training iteration on ``real_A`` [B, Ca, H, W] and ``real_B`` [B, Cb, H, W] (on the device, in the
        run's memory format), through ``self.ctx``; returns the detached float losses in :attr:`loss_names`
        order."""
        raise NotImplementedError

    def sample_rows(self) -> list[list[torch.Tensor]]:
        """Image batches of the last step for a sample grid, one row per list (first image of each is shown)."""
        raise NotImplementedError

    def end_epoch(self) -> None:
        """Called after every epoch: step the LR schedulers."""
        for sched in self.train_state()["schedulers"].values():
            sched.step()

    def lr(self) -> float:
        return next(iter(self.train_state()["optimizers"].values())).param_groups[0]["lr"]

    def preprocess(self, pre: Preprocess, epoch: int) -> Preprocess:
        """The data augmentation for ``epoch`` (1-based); CUT turns the random resize-crop off when decaying."""
        return pre
