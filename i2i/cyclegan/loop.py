"""The one training loop for every method (CycleGAN, CUT, FastCUT, ...), visible top to bottom in :func:`train`.

The loop owns the data plan, epochs, signals, progress, logging, sample grids, NaN checks, checkpoints and exact
resume; the method (:mod:`i2i.cyclegan.methods`) owns its networks, optimizers, schedulers and one step.

Runs unchanged on one device or under ``accelerate launch`` (DDP): each rank takes its shard of every epoch,
only rank 0 writes checkpoints, samples and logs.
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import shlex
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from i2i.cyclegan import run_aside
from i2i.cyclegan.checkpoint import INFO_FILE, latest_checkpoint
from i2i.cyclegan.checkpoint_writer import CheckpointWriter, load_nets
from i2i.cyclegan.config import DiscriminatorConfig, TrainConfig
from i2i.cyclegan.context import StepContext
from i2i.cyclegan.data import BUILTIN_SHAPES, Preprocess, build_dataset, check_trainable, collate, epoch_plan
from i2i.cyclegan.methods import get_method
from i2i.cyclegan.methods.base import Method
from i2i.cyclegan.networks import min_train_side, required_multiple
from i2i.cyclegan.signals import StopSignal, leave_stops_to_the_main_process
from i2i.cyclegan.train_state import load_train_state, save_train_state
from i2i.cyclegan.translator import ROUNDING
from i2i.device import make_accelerator
from i2i.errors import CheckpointError, InputError, Interrupted, NumericalError, OutputError, UsageError
from i2i.images import atomic_path, check_writable, save_image, tensor_to_image
from i2i.options import flag
from i2i.progress import Reporter


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    epochs_done: int
    checkpoint: Path | None
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False
    nets: dict[str, nn.Module] = field(default_factory=dict, repr=False)  # e.g. G_A, G_B, D_A, D_B (this process)
    start_iteration: int = 0           # where this call began (a resumed run's checkpoint)
    method: Method | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PeriodicHook:
    """A callback run on rank 0 every ``every`` iterations (e.g. an evaluation).

    ``fn(method, iteration)`` returns ``None`` or a dict of values, written to ``log.jsonl`` as
    ``{"iter": N, "hook": name, ...}`` (its numbers also to the tracker, as ``name/key``). If the dict holds
    ``"checkpoint": NAME`` (a string), the current weights are also saved as ``checkpoints/NAME`` (weights only,
    replaced each time, never pruned; e.g. ``best``) with that log record as its ``info.json``.
    """

    name: str
    every: int
    fn: Callable[[Method, int], dict[str, Any] | None]


RUN_LOCK = ".lock"          # held by the process training in the run folder (_Run._hold_run_dir)


def resume_command(run_dir: Path | str) -> str:
    """The command that continues the run in ``run_dir``."""
    return f"i2i cyclegan train --run-dir {shlex.quote(str(run_dir))} --resume"


def _sample_grid(rows: list[list[torch.Tensor]]) -> "Any":
    """One row of tiles per list (the first image of each batch)."""
    from PIL import Image

    tiles = [[tensor_to_image(v[0], ROUNDING).convert("RGB") for v in row] for row in rows]
    w = max(t.width for row in tiles for t in row)
    h = max(t.height for row in tiles for t in row)
    grid = Image.new("RGB", (max(len(r) for r in tiles) * w, len(tiles) * h), (255, 255, 255))
    for y, row in enumerate(tiles):
        for x, t in enumerate(row):
            grid.paste(t, (x * w, y * h))
    return grid


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise UsageError("--resume continues the run in --run-dir and --overwrite starts it over: give one")
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"--run-dir {run_dir} is a file, not a folder")
    check_writable([run_dir / "config.json"])       # before the data and networks are built (a file in the way)
    if (said := run_aside.recover(run_dir)) is not None:
        warnings.warn(said, stacklevel=4)
    existing = latest_checkpoint(run_dir) if run_dir.exists() else None
    elsewhere = run_aside.other_hosts(run_dir)
    if elsewhere and existing is None and not overwrite:
        raise OutputError(f"{run_dir}: {elsewhere[0].name} holds a run set aside by a start with --overwrite on "
                          "another host that has not written its first checkpoint; if that start is no longer "
                          f"running, move the contents of {elsewhere[0]} back into {run_dir} and run again")
    if resume and existing is None:
        raise CheckpointError(f"{run_dir}: no complete checkpoint to resume from")
    if not resume and existing is not None and not overwrite:
        raise OutputError(f"{run_dir}: already holds a run (checkpoint {existing.name}); pass --resume (in Python: "
                          "train(..., resume=True)) to continue it, --overwrite to start over, or choose another "
                          "--run-dir")


def _accelerator(config: TrainConfig, device: str | None) -> Any:
    if device not in (None, "auto"):
        from i2i.device import resolve_device

        resolve_device(device)                       # an unknown device name is a usage error, not torch's
    accelerator = make_accelerator(precision=config.precision, cpu=device == "cpu",
                                   log_with=config.log_with, project_dir=str(config.run_dir))
    dev = accelerator.device
    if device not in (None, "auto", "cpu") and torch.device(device).type != dev.type:
        raise UsageError(f"--device {device}: not available here (accelerate chose {dev})")
    if config.precision == "fp16" and dev.type != "cuda":
        raise UsageError(f"{flag(config, 'precision')} fp16 needs a CUDA device; use bf16 on CPU")
    return accelerator


def _build_data(config: TrainConfig, reporter: Reporter | None) -> tuple[Preprocess, Any]:
    """The preprocessing (checked against the networks) and the unpaired dataset; warnings go to ``reporter``."""
    multiple = required_multiple(config.generator)
    min_side = min_train_side(config.generator, config.discriminator)
    pre = Preprocess(config.preprocess, config.load_size, config.crop_size, config.flip, multiple, min_side)
    if config.preprocess in ("crop", "resize_and_crop", "scale_width_and_crop") or config.dataroot == BUILTIN_SHAPES:
        crop, n_layers, net_d = flag(config, "crop_size"), flag(DiscriminatorConfig, "n_layers"), flag(
            DiscriminatorConfig, "arch")
        if config.crop_size % multiple:
            raise UsageError(f"{crop} {config.crop_size} must be a multiple of {multiple} for "
                             f"{config.generator.arch}")
        if config.crop_size < min_side:
            raise UsageError(f"{crop} {config.crop_size} is too small for these networks: they need at least "
                             f"{min_side} px (a smaller discriminator: {n_layers} with {net_d} n_layers)")
    dataset = build_dataset(config.dataroot, config.phase, pre, config.generator.input_nc,
                            config.generator.output_nc, config.max_dataset_size, config.shapes_count, config.seed,
                            warn=reporter.warn if reporter else (lambda m: None))
    _check_one_size(config, getattr(dataset, "train_sizes", ()))
    return pre, dataset


def _check_one_size(config: TrainConfig, sizes: Any, when: str = "") -> None:
    sizes = sorted(sizes)
    if config.batch_size > 1 and len(sizes) > 1:
        shown = " and ".join(f"{w}x{h}" for w, h in sizes[:2])
        raise UsageError(f"{when}{flag(config, 'preprocess')} {config.preprocess} keeps each image's size, and these "
                         f"differ ({shown}{', ...' if len(sizes) > 2 else ''}): a batch of {config.batch_size} needs "
                         f"one size; use {flag(config, 'batch_size')} 1 or a --preprocess that crops")


def _check_later_epochs(config: TrainConfig, pre: Preprocess, dataset: Any, method: Method) -> None:
    """A method whose preprocessing changes in later epochs (CUT's decay phase: load size := crop size) is checked
    against the training images now, not when that epoch starts (a run stopped early by --max-iters too: a resume
    may reach it)."""
    firsts: dict[Preprocess, int] = {}
    for epoch in range(1, config.total_epochs + 1):
        firsts.setdefault(method.preprocess(pre, epoch), epoch)
    sources = getattr(dataset, "source_sizes", {})        # {size: the first image of that size}
    for later, epoch in firsts.items():
        if later == pre:
            continue
        when = (f"from epoch {epoch} on, --model {config.model} trains with load size {later.load_size} and crop "
                f"size {later.crop_size} (--preprocess {later.mode}): ")
        sizes = set()
        for size, path in sorted(sources.items()):
            try:
                sizes.add(check_trainable(size, later, str(path)))
            except InputError as exc:
                others = " (images of other sizes may be too)" if len(sources) > 1 else ""
                raise UsageError(f"{when}{exc}; or a larger {flag(config, 'crop_size')}{others}") from None
        _check_one_size(config, sizes, when)


def _iters_per_epoch(config: TrainConfig, drop_last: bool, per_rank: int, world: int) -> int:
    """Batches in one epoch of ``per_rank`` images; a method that leaves out a short last batch (CUT, as its
    reference's DataLoader does) needs at least one full batch."""
    if not drop_last:
        return math.ceil(per_rank / config.batch_size)
    if per_rank < config.batch_size:
        raise UsageError(f"--model {config.model} leaves out a last batch shorter than "
                         f"{flag(config, 'batch_size')} {config.batch_size}, and an epoch has only {per_rank} "
                         f"images{' per process' if world > 1 else ''}: use a smaller batch"
                         f"{' or fewer processes' if world > 1 else ''}")
    return per_rank // config.batch_size


def _epoch_loader(dataset: Any, config: TrainConfig, epoch: int, skip: int, rank: int, world: int,
                  per_rank: int, dev: torch.device, drop_last: bool = False) -> torch.utils.data.DataLoader:
    """This rank's batches of ``epoch``, from batch ``skip`` on (a resumed epoch continues where it stopped)."""
    n_a, n_b = dataset.sizes
    plan = epoch_plan(n_a, n_b, epoch, config.seed, config.serial_batches)
    plan += plan[: per_rank * world - len(plan)]  # equal shards, like DistributedSampler
    shard = plan[rank::world]
    return torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, sampler=shard[skip * config.batch_size:],
        num_workers=min(config.num_workers, os.cpu_count() or 1), pin_memory=dev.type == "cuda", drop_last=drop_last,
        persistent_workers=False, generator=torch.Generator().manual_seed(config.seed + epoch),
        collate_fn=collate, worker_init_fn=leave_stops_to_the_main_process)


def _stop_agreed(stop: StopSignal, accelerator: Any) -> bool:
    """Whether a stop was asked for on this rank or, under DDP, on any rank."""
    stop_now = stop.requested is not None
    if accelerator.num_processes > 1:
        flag = torch.tensor([1.0 if stop_now else 0.0], device=accelerator.device)
        stop_now = bool(accelerator.reduce(flag, reduction="sum").item() > 0)
    return stop_now


class _Run:
    """The loop's bookkeeping for one :func:`train` call: the position, the running losses, ``log.jsonl``,
    sample grids, hooks and checkpoints. Only rank 0 writes; every rank joins the barriers around a save."""

    def __init__(self, config: TrainConfig, method: Method, accelerator: Any, scaler: Any,
                 iters_per_epoch: int, sizes: tuple[int, int]) -> None:
        self.config, self.method, self.accelerator, self.scaler = config, method, accelerator, scaler
        self.run_dir = Path(config.run_dir)
        self.writer = CheckpointWriter(self.run_dir, config.keep_checkpoints)
        self.is_main = accelerator.is_main_process
        self.iters_per_epoch, self.sizes = iters_per_epoch, sizes      # sizes: images in A and B
        self.epoch, self.iter_in_epoch, self.global_iter = 1, 0, 0
        self.last_ckpt: Path | None = None    # the newest checkpoint: the resumed one until this call saves another
        self.loss_names = method.loss_names
        self.loss_sums = torch.zeros(len(self.loss_names), device=accelerator.device)
        self.loss_count = 0
        self.last_losses: dict[str, float] = {}
        self.t_log = time.perf_counter()
        self.interrupted = False
        self.aside: Path | None = None        # the old run's outputs (--overwrite) until the first checkpoint
        self._release: Callable[[], Any] = lambda: None     # lets go of the run folder's lock (_hold_run_dir)

    # ---- start: resume, run folder
    def _state_parts(self) -> dict[str, Any]:
        return dict(self.method.train_state(), scaler=self.scaler)

    def restore(self, reporter: Reporter) -> None:
        """Weights, optimizers, schedulers, pools, RNG and position from ``RUN/latest``."""
        folder = latest_checkpoint(self.run_dir)
        load_nets(folder, self.method.networks())
        pos = load_train_state(folder, device=self.accelerator.device, **self._state_parts())
        self.epoch, self.iter_in_epoch, self.global_iter = pos["epoch"], pos["iter_in_epoch"], pos["global_iter"]
        if pos.get("iters_per_epoch") not in (None, self.iters_per_epoch):
            raise CheckpointError(f"{self.run_dir}: the dataset or batch size changed since the checkpoint "
                                  f"({pos['iters_per_epoch']} -> {self.iters_per_epoch} iterations per epoch)"
                                  + self._kept_short_batch(pos))
        saved = tuple(pos.get("dataset_sizes") or self.sizes)       # (checkpoints before it was recorded: not known)
        if saved != self.sizes:
            changed = ", ".join(f"{d}: {a} -> {b} images" for d, a, b in zip("AB", saved, self.sizes) if a != b)
            raise CheckpointError(f"{self.run_dir}: the dataset changed since the checkpoint ({changed}); an exact "
                                  "resume needs the same images (put them back, or start a new run)")
        reporter.info(f"resuming {self.run_dir} from {folder.name}: epoch {self.epoch}, iteration {self.global_iter}")
        self.last_ckpt = folder

    def _kept_short_batch(self, pos: dict[str, Any]) -> str:
        """Why a run can be one batch an epoch longer than its settings give now: it was started before CUT left
        out its short last batch (2026-12-07), with the same images."""
        batch, world = self.config.batch_size, self.accelerator.num_processes
        kept = math.ceil(math.ceil(max(self.sizes) / world) / batch)
        same_images = pos.get("dataset_sizes") in (None, list(self.sizes))
        if (self.method.drop_last and batch > 1 and same_images
                and pos["iters_per_epoch"] == kept > self.iters_per_epoch):
            return ("; or the run was started by an i2i that still trained CUT on an epoch's short last batch, which "
                    "it now leaves out as the reference does: start a new run")
        return ""

    def start(self, resume: bool, overwrite: bool, record: bool = True) -> None:
        """Hold the run folder (:meth:`_hold_run_dir`) and write ``config.json`` (``record``: a resumed run already
        past its end keeps the one it has); a fresh run over an old one (``overwrite``) first moves the old run's
        outputs (checkpoints, samples, log, evaluations, config) into a hidden folder (:mod:`i2i.cyclegan.run_aside`),
        so none of them can be mistaken for the new run's or outlive its checkpoints when they are pruned;
        :meth:`save` deletes it at the new run's first checkpoint, :meth:`put_back` restores it if the new run fails
        before."""
        config = self.config
        if self.is_main:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"--run-dir {self.run_dir}: cannot create it ({exc.strerror or exc})") from exc
            self._hold_run_dir()
            if not resume and overwrite:
                self.aside = run_aside.set_aside(self.run_dir)
            self.writer.clean_stale()
            if record:
                with atomic_path(self.run_dir / "config.json", overwrite=True) as p:
                    p.write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
        if config.log_with:
            self.accelerator.init_trackers("cyclegan", config={k: v for k, v in config.to_dict().items()
                                                               if isinstance(v, (int, float, str, bool))})

    def _hold_run_dir(self) -> None:
        """Hold a lock on ``RUN/.lock`` while this process trains in the folder: a second ``train`` on the same
        ``--run-dir`` at once stops here instead of writing its checkpoints, config and log over this one's. A
        POSIX record lock (``lockf``): forked DataLoader workers do not inherit it (a killed trainer's workers
        would hold it for seconds more), it works on NFS, and it goes with the process, also when killed. Where the
        file system takes no locks, a warning says the folder is not guarded."""
        try:
            import fcntl
        except ImportError:
            return                                  # no POSIX locks on this platform
        path = self.run_dir / RUN_LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            warnings.warn(f"{path}: cannot create the run folder's lock ({exc.strerror or exc}); a second training "
                          "in it at once would not be stopped", stacklevel=2)
            return
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"--run-dir {self.run_dir}: another process is training in it now; wait for it "
                                  "to finish (or stop it), or give another --run-dir") from None
            warnings.warn(f"--run-dir {self.run_dir}: its file system takes no locks ({exc.strerror or exc}); a "
                          "second training in it at once would not be stopped", stacklevel=2)
            return
        self._release = weakref.finalize(self, os.close, fd)     # at the end of the run (__exit__), or at the latest
                                                                  # when this object goes

    def __enter__(self) -> "_Run":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and self.is_main:
            self.put_back()
        self._release()

    def put_back(self) -> None:
        """The new run failed before its first checkpoint: its outputs go, the old run's come back."""
        if self.aside is None:
            return
        run_aside.put_back(self.run_dir, self.aside)
        self.aside = None

    def _drop_old_runs(self) -> None:
        """The new run has a checkpoint: the old run's outputs it set aside (and any a start killed here left)
        are deleted."""
        run_aside.drop_dead(self.run_dir, self.aside)
        self.aside = None

    # ---- every iteration
    def count(self, losses: torch.Tensor) -> None:
        self.loss_sums += losses
        self.loss_count += 1
        self.global_iter += 1
        self.iter_in_epoch += 1

    def check_finite(self, where: str) -> None:
        if not self.loss_count or bool(torch.isfinite(self.loss_sums).all()):
            return
        bad = [n for n, v in zip(self.loss_names, self.loss_sums.tolist()) if not math.isfinite(v)]
        kept = f"the last good checkpoint is kept ({self.last_ckpt})" if self.last_ckpt else \
            "no checkpoint had been saved yet"
        fp32 = "" if self.config.precision == "fp32" else f" or {flag(TrainConfig, 'precision')} fp32"
        raise NumericalError(f"loss {', '.join(bad)} became NaN/inf near iteration {self.global_iter} ({where}); "
                             f"{kept} — try a lower {flag(TrainConfig, 'lr')}{fp32}")

    def log_losses(self) -> str:
        """Average the losses since the last log into ``log.jsonl`` (and the tracker); the progress status text."""
        self.check_finite("log")
        self.last_losses = dict(zip(self.loss_names, (self.loss_sums / self.loss_count).tolist()))
        now = time.perf_counter()
        self.write_log({"epoch": self.epoch, "iter": self.global_iter, "lr": self.method.lr(),
                        "sec_per_iter": (now - self.t_log) / self.loss_count, **self.last_losses})
        self.t_log = now
        self.loss_sums.zero_()
        self.loss_count = 0
        if self.config.log_with:
            self.accelerator.log(self.last_losses, step=self.global_iter)
        return " ".join(f"{k} {v:.3f}" for k, v in self.last_losses.items() if k in self.method.status_names)

    def write_log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def save_samples(self) -> None:
        if self.is_main:
            with torch.no_grad():
                grid = _sample_grid(self.method.sample_rows())
            save_image(grid, self.run_dir / "samples" / f"iter_{self.global_iter:08d}.png", overwrite=True)

    def run_hooks(self, hooks: Sequence[PeriodicHook]) -> None:
        for hook in hooks:
            if self.global_iter % hook.every:
                continue
            values = (hook.fn(self.method, self.global_iter) or {}) if self.is_main else {}
            name = values.pop("checkpoint", None)
            if self.accelerator.num_processes > 1:
                from accelerate.utils import broadcast_object_list
                name = broadcast_object_list([name])[0]
            record = {"epoch": self.epoch, "iter": self.global_iter, "hook": hook.name, **values}
            if values:
                self.write_log(record)
                if self.config.log_with:
                    self.accelerator.log({f"{hook.name}/{k}": v for k, v in values.items()
                                          if isinstance(v, (int, float))}, step=self.global_iter)
            if name:
                self.save(str(name), with_state=False, info=record)

    # ---- checkpoints
    def save(self, name: str, with_state: bool = True, info: dict[str, Any] | None = None) -> Path | None:
        self.accelerator.wait_for_everyone()
        path = None
        if self.is_main:
            position = {"epoch": self.epoch, "iter_in_epoch": self.iter_in_epoch, "global_iter": self.global_iter,
                        "iters_per_epoch": self.iters_per_epoch, "dataset_sizes": list(self.sizes)}

            def extra_files(folder: Path) -> None:
                if with_state:
                    save_train_state(folder, position=position, **self._state_parts())
                if info is not None:
                    (folder / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")

            path = self.writer.write(name, self.method.networks(), extra_files if with_state or info else None,
                                     update_latest=with_state)
            if with_state:
                self._drop_old_runs()
        self.accelerator.wait_for_everyone()
        return path

    def checkpoint(self, where: str) -> None:
        """A resumable checkpoint at the current position (after checking the losses since the last log)."""
        self.check_finite(where)
        self.last_ckpt = self.save(f"iter_{self.global_iter:08d}")

    def end_epoch(self) -> None:
        """LR decay, then an epoch snapshot (weights only, every ``save_epoch_every``) and a checkpoint that
        resumes at the next epoch's start."""
        self.method.end_epoch()
        finished = self.epoch
        self.epoch += 1
        self.iter_in_epoch = 0
        self.check_finite("epoch end")
        if finished % self.config.save_epoch_every == 0:
            self.save(f"epoch_{finished:04d}", with_state=False)
        self.last_ckpt = self.save(f"iter_{self.global_iter:08d}")


def train(config: TrainConfig, resume: bool = False, device: str | None = None,
          reporter: Reporter | None = None, overwrite: bool = False,
          hooks: Sequence[PeriodicHook] = ()) -> TrainResult:
    """Train ``config.model`` as described by ``config``; see the module docstring. Returns a :class:`TrainResult`.

    ``resume`` continues from ``RUN/latest`` exactly (weights, optimizers, schedulers, pools, RNG, position); give
    it here as well as to :func:`~i2i.cyclegan.run_config.run_config`. Without ``resume`` an existing run with
    checkpoints is refused unless ``overwrite``. ``config.precision`` "auto" is resolved for the device (bf16 where
    it computes bf16 natively, else fp32) and recorded so. The caller's random state (Python's ``random``,
    torch's CPU and CUDA generators) is the same after the call as before: training seeds its own.
    """
    with _caller_random_state():
        return _train(config, resume, device, reporter, overwrite, hooks)


@contextmanager
def _caller_random_state() -> Iterator[None]:
    """Restore Python's and torch's global random states on exit (training seeds them from ``config.seed``)."""
    state = random.getstate()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(state)


def _train(config: TrainConfig, resume: bool, device: str | None, reporter: Reporter | None, overwrite: bool,
           hooks: Sequence[PeriodicHook]) -> TrainResult:
    if config.precision == "auto":
        from i2i.device import resolve_device, resolve_precision

        config = replace(config, precision=resolve_precision("auto", resolve_device(device)))
    reporter = reporter or Reporter.library()
    method_cls = get_method(config.model)
    method_cls.check(config, resume)       # an unknown or invalid option (or combination) fails here, not after loading
    _check_run_dir(Path(config.run_dir), resume, overwrite)
    accelerator = _accelerator(config, device)
    dev, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    is_main = accelerator.is_main_process
    if config.eval_every:    # --eval-every: KID every N iterations, checkpoints/best (fails here, not at N)
        from i2i.cyclegan.best import BestCheckpoint

        best = BestCheckpoint.start(config, dev, resume, reporter if is_main else None)
        hooks = [*hooks, PeriodicHook("eval", config.eval_every, best)]
    torch.manual_seed(config.seed)

    # ---- data
    pre, dataset = _build_data(config, reporter if is_main else None)
    per_rank = math.ceil(max(dataset.sizes) / world)
    iters_per_epoch = _iters_per_epoch(config, method_cls.drop_last, per_rank, world)

    # ---- the method: networks, optimizers, schedulers, losses
    ctx = StepContext.for_run(dev, config.precision, config.memory_format)
    method = method_cls(config, ctx)
    _check_later_epochs(config, pre, dataset, method)
    run = _Run(config, method, accelerator, ctx.scaler, iters_per_epoch, tuple(dataset.sizes))
    total_iters = config.total_epochs * iters_per_epoch
    total_iters = min(total_iters, config.max_iters or total_iters)
    if resume:
        run.restore(reporter)
    run.start(resume, overwrite, record=not resume or run.global_iter < total_iters)   # nothing to do: kept as is
    ctx.prepare(accelerator)

    # ---- the loop
    start_iter, t_start, stop = run.global_iter, time.perf_counter(), StopSignal()
    with run, stop, reporter.progress(total_iters, "train", completed=run.global_iter) as advance:
        while run.epoch <= config.total_epochs and run.global_iter < total_iters:
            dataset.pre = method.preprocess(pre, run.epoch)
            for batch in _epoch_loader(dataset, config, run.epoch, run.iter_in_epoch, rank, world, per_rank, dev,
                                       method.drop_last):
                real_A = batch["A"].to(dev, non_blocking=True, memory_format=ctx.memory_format)
                real_B = batch["B"].to(dev, non_blocking=True, memory_format=ctx.memory_format)
                run.count(method.step(real_A, real_B))
                ctx.end_step()
                advance(1)

                if run.global_iter % config.log_every == 0 or run.global_iter == total_iters:
                    advance(0, status=run.log_losses())
                if run.global_iter % config.sample_every == 0:
                    run.save_samples()
                run.run_hooks(hooks)
                stop_now = _stop_agreed(stop, accelerator)
                if run.iter_in_epoch >= iters_per_epoch:
                    break                                   # the epoch's end saves below
                if run.global_iter % config.save_every == 0 or run.global_iter >= total_iters or stop_now:
                    run.checkpoint("save")
                if stop_now or run.global_iter >= total_iters:
                    run.interrupted = stop_now
                    break
            if run.interrupted or (run.global_iter >= total_iters and run.iter_in_epoch < iters_per_epoch):
                break
            run.end_epoch()
            if stop.requested is not None:
                run.interrupted = True
                break

    if config.log_with:
        accelerator.end_training()
    result = TrainResult(run.run_dir, run.global_iter, run.epoch - 1, run.last_ckpt, run.last_losses,
                         time.perf_counter() - t_start, run.interrupted,
                         nets={name: s.net for name, s in method.networks().items()}, start_iteration=start_iter,
                         method=method)
    if run.interrupted:
        raise Interrupted(f"interrupted by {stop.requested}: saved {run.last_ckpt}; continue with: "
                          f"{resume_command(run.run_dir)}")
    return result
