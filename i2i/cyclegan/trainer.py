"""The CycleGAN training loop, visible top to bottom in :func:`train`.

One iteration is the reference's ``optimize_parameters``: generators forward (A -> B -> A, B -> A -> B, and the
identity mappings), generator loss (GAN + cycle + identity) with discriminators frozen, one Adam step for both
generators; then both discriminators on real vs pooled fakes, one Adam step for both.

Runs unchanged on one device or under ``accelerate launch`` (DDP): each rank takes its shard of every epoch,
only rank 0 writes checkpoints, samples and logs.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from i2i.cyclegan.checkpoint import (LATEST_FILE, latest_checkpoint, load_state_strict, read_weights,
                                     save_discriminator, save_generator, GENERATOR_FORMAT, DISCRIMINATOR_FORMAT)
from i2i.cyclegan.config import DiscriminatorConfig, GeneratorConfig, TrainConfig, RESUMABLE_FIELDS
from i2i.cyclegan.data import Preprocess, build_dataset, epoch_plan
from i2i.cyclegan.losses import discriminator_loss, gan_loss
from i2i.cyclegan.networks import define_D, define_G, required_multiple
from i2i.cyclegan.pool import ImagePool
from i2i.cyclegan.train_state import load_train_state, save_train_state
from i2i.device import autocast, make_accelerator, use_channels_last
from i2i.errors import CheckpointError, Interrupted, NumericalError, OutputError, UsageError
from i2i.images import atomic_path, fsync_dir, save_image, tensor_to_image
from i2i.progress import Reporter

LOSS_NAMES = ("D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B")


class GeneratorPair(nn.Module):
    """Both generators and the whole generator-side forward of one iteration (one DDP call).

    Inputs real_A: [B, Ca, H, W], real_B: [B, Cb, H', W']. When the norm is per-sample (instance/none) and A and
    B share a shape, the two calls of each generator on real images are fused into one batched call.
    """

    def __init__(self, G_A: nn.Module, G_B: nn.Module, identity: bool, fuse: bool) -> None:
        super().__init__()
        self.G_A, self.G_B, self.identity, self.fuse = G_A, G_B, identity, fuse

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        n = real_A.shape[0]
        if self.identity and self.fuse and real_A.shape == real_B.shape:
            fake_B, out["idt_A"] = self.G_A(torch.cat([real_A, real_B])).split(n)
            fake_A, out["idt_B"] = self.G_B(torch.cat([real_B, real_A])).split(n)
        else:
            fake_B, fake_A = self.G_A(real_A), self.G_B(real_B)
            if self.identity:
                out["idt_A"], out["idt_B"] = self.G_A(real_B), self.G_B(real_A)
        out.update(fake_B=fake_B, fake_A=fake_A, rec_A=self.G_B(fake_B), rec_B=self.G_A(fake_A))
        return out


class DiscriminatorPair(nn.Module):
    """D_A judges domain B (real_B vs fake_B), D_B judges domain A. One call scores real and fake together."""

    def __init__(self, D_A: nn.Module, D_B: nn.Module, fuse: bool) -> None:
        super().__init__()
        self.D_A, self.D_B, self.fuse = D_A, D_B, fuse

    @staticmethod
    def _score(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, fuse: bool) -> tuple[torch.Tensor, ...]:
        if fuse and real.shape == fake.shape:
            return D(torch.cat([real, fake])).split(real.shape[0])
        return D(real), D(fake)

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor, fake_A: torch.Tensor, fake_B: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        real_b, fake_b = self._score(self.D_A, real_B, fake_B, self.fuse)
        real_a, fake_a = self._score(self.D_B, real_A, fake_A, self.fuse)
        return {"D_A_real": real_b, "D_A_fake": fake_b, "D_B_real": real_a, "D_B_fake": fake_a}


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    epochs_done: int
    checkpoint: Path | None
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False
    nets: dict[str, nn.Module] = field(default_factory=dict, repr=False)  # G_A, G_B, D_A, D_B (this process)
    start_iteration: int = 0           # where this call began (a resumed run's checkpoint)


class _StopSignal:
    """SIGINT/SIGTERM set a flag checked between iterations; a second signal aborts at once."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def lr_lambda(config: TrainConfig):
    """Multiplicative LR factor per epoch index e (0-based), as the reference's schedulers."""
    if config.lr_policy == "linear":
        return lambda e: 1.0 - max(0, e + 1 - config.n_epochs) / float(config.n_epochs_decay + 1)
    if config.lr_policy == "step":
        return lambda e: 0.1 ** (e // config.lr_decay_iters)
    if config.lr_policy == "cosine":
        t_max = max(config.n_epochs, 1)
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * (e % (2 * t_max)) / t_max))
    return lambda e: 1.0


def make_adam(params, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam with the fused kernel where available (same math, fewer passes over memory)."""
    kwargs = dict(lr=config.lr, betas=(config.beta1, config.beta2))
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, foreach=device.type != "cpu", **kwargs)


def resolve_config(config: TrainConfig, resume: bool, overrides: set[str]) -> TrainConfig:
    """On resume, the run's saved config wins; only RESUMABLE_FIELDS given in ``overrides`` may change."""
    saved_path = Path(config.run_dir) / "config.json"
    if not resume:
        return config
    if not saved_path.is_file():
        raise CheckpointError(f"{config.run_dir}: nothing to resume (no config.json); drop --resume to start")
    try:
        saved = TrainConfig.from_dict(json.loads(saved_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, UsageError) as exc:
        raise CheckpointError(f"{saved_path}: unreadable run config ({exc})") from exc
    changed = {name for name in overrides if getattr(config, name) != getattr(saved, name)}
    refused = sorted(changed - RESUMABLE_FIELDS)
    if refused:
        raise UsageError("cannot change " + ", ".join("--" + n.replace("_", "-") for n in refused)
                         + " when resuming (they are fixed by the run's config.json)")
    import dataclasses
    return dataclasses.replace(saved, **{name: getattr(config, name) for name in changed})


def _sample_grid(visuals: list[torch.Tensor]) -> "Any":
    """Two rows (A: real, fake, rec; B: real, fake, rec) of the first image in the batch."""
    from PIL import Image

    tiles = [tensor_to_image(v[0]).convert("RGB") for v in visuals]
    w = max(t.width for t in tiles)
    h = max(t.height for t in tiles)
    grid = Image.new("RGB", (3 * w, 2 * h), (255, 255, 255))
    for i, t in enumerate(tiles):
        grid.paste(t, ((i % 3) * w, (i // 3) * h))
    return grid


class CheckpointWriter:
    """Writes complete checkpoint folders atomically and keeps the ``latest`` pointer and pruning."""

    def __init__(self, run_dir: Path, keep: int) -> None:
        self.run_dir, self.keep = run_dir, keep
        self.root = run_dir / "checkpoints"

    def clean_stale(self) -> None:
        if self.root.is_dir():
            for p in self.root.glob(".*.tmp*"):
                shutil.rmtree(p, ignore_errors=True)

    def write(self, name: str, nets: dict[str, tuple[nn.Module, Any]], state_fn: Any | None,
              update_latest: bool) -> Path:
        final = self.root / name
        tmp = self.root / f".{name}.tmp{os.getpid()}"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for net_name, (net, cfg) in nets.items():
                if isinstance(cfg, GeneratorConfig):
                    save_generator(tmp / f"{net_name}.safetensors", net, cfg)
                else:
                    save_discriminator(tmp / f"{net_name}.safetensors", net, cfg)
            if state_fn is not None:
                state_fn(tmp)
                for f in tmp.iterdir():
                    with open(f, "rb+") as fh:
                        os.fsync(fh.fileno())
            fsync_dir(tmp)
            if final.exists():
                old = self.root / f".{name}.old{os.getpid()}"
                os.replace(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, final)
            fsync_dir(self.root)
            if update_latest:
                with atomic_path(self.run_dir / LATEST_FILE, overwrite=True) as p:
                    p.write_text(f"checkpoints/{name}\n", encoding="utf-8")
                fsync_dir(self.run_dir)
                self._prune(keep_name=name)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputError(f"{final}: cannot write checkpoint ({exc.strerror or exc}); "
                              "the previous checkpoint is intact") from exc
        return final

    def _prune(self, keep_name: str) -> None:
        iters = sorted(p for p in self.root.glob("iter_*") if p.is_dir())
        for p in iters[:-self.keep]:
            if p.name != keep_name:
                shutil.rmtree(p, ignore_errors=True)


def _load_nets(folder: Path, nets: dict[str, nn.Module]) -> None:
    for name, net in nets.items():
        fmt = GENERATOR_FORMAT if name.startswith("G") else DISCRIMINATOR_FORMAT
        state, _ = read_weights(folder / f"{name}.safetensors", fmt)
        load_state_strict(net, state, str(folder / f"{name}.safetensors"))


def train(config: TrainConfig, resume: bool = False, device: str | None = None,
          reporter: Reporter | None = None, overwrite: bool = False) -> TrainResult:
    """Train a CycleGAN as described by ``config``; see the module docstring. Returns a :class:`TrainResult`.

    ``resume`` continues from ``RUN/latest`` exactly (weights, optimizers, schedulers, pools, RNG, position).
    Without ``resume`` an existing run with checkpoints is refused unless ``overwrite``.
    """
    reporter = reporter or Reporter(quiet=True)
    run_dir = Path(config.run_dir)
    writer = CheckpointWriter(run_dir, config.keep_checkpoints)
    existing = latest_checkpoint(run_dir) if run_dir.exists() else None
    if resume and existing is None:
        raise CheckpointError(f"{run_dir}: no complete checkpoint to resume from")
    if not resume and existing is not None and not overwrite:
        raise OutputError(f"{run_dir}: already holds a run (checkpoint {existing.name}); pass --resume to "
                          "continue it, --overwrite to start over, or choose another --run-dir")

    accelerator = make_accelerator(precision=config.precision, cpu=device == "cpu",
                                   log_with=config.log_with, project_dir=str(run_dir))
    dev = accelerator.device
    if device not in (None, "auto", "cpu") and torch.device(device).type != dev.type:
        raise UsageError(f"--device {device}: not available here (accelerate chose {dev})")
    if config.precision == "fp16" and dev.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA device; use bf16 on CPU")
    is_main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    torch.manual_seed(config.seed)

    # ---- data
    multiple = required_multiple(config.generator)
    pre = Preprocess(config.preprocess, config.load_size, config.crop_size, config.flip, multiple)
    if config.preprocess in ("crop", "resize_and_crop", "scale_width_and_crop") and config.crop_size % multiple:
        raise UsageError(f"--crop-size {config.crop_size} must be a multiple of {multiple} for "
                         f"{config.generator.arch}")
    dataset = build_dataset(config.dataroot, config.phase, pre, config.generator.input_nc,
                            config.generator.output_nc, config.max_dataset_size, config.shapes_count, config.seed,
                            warn=reporter.warn if is_main else (lambda m: None))
    n_a, n_b = dataset.sizes
    per_rank = math.ceil(max(n_a, n_b) / world)
    iters_per_epoch = math.ceil(per_rank / config.batch_size)

    # ---- networks, optimizers, schedulers, pools
    g_cfg_a, g_cfg_b = config.generator, config.generator.reversed()
    d_cfg_a = DiscriminatorConfig(**{**config.discriminator.to_dict(), "input_nc": config.generator.output_nc})
    d_cfg_b = DiscriminatorConfig(**{**config.discriminator.to_dict(), "input_nc": config.generator.input_nc})
    init = dict(init_type=config.init_type, init_gain=config.init_gain)
    G_A, G_B = define_G(g_cfg_a, **init), define_G(g_cfg_b, **init)
    D_A, D_B = define_D(d_cfg_a, **init), define_D(d_cfg_b, **init)
    identity = config.lambda_identity > 0 and config.generator.input_nc == config.generator.output_nc
    per_sample = config.generator.norm != "batch" and config.discriminator.norm != "batch"
    gens = GeneratorPair(G_A, G_B, identity, fuse=per_sample)
    discs = DiscriminatorPair(D_A, D_B, fuse=per_sample)
    channels_last = use_channels_last(dev)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    gens.to(dev, memory_format=memory_format)
    discs.to(dev, memory_format=memory_format)
    opt_G = make_adam(itertools.chain(G_A.parameters(), G_B.parameters()), config, dev)
    opt_D = make_adam(itertools.chain(D_A.parameters(), D_B.parameters()), config, dev)
    sched_G = torch.optim.lr_scheduler.LambdaLR(opt_G, lr_lambda(config))
    sched_D = torch.optim.lr_scheduler.LambdaLR(opt_D, lr_lambda(config))
    pool_A, pool_B = ImagePool(config.pool_size, config.seed + 1), ImagePool(config.pool_size, config.seed + 2)
    scaler = torch.amp.GradScaler(dev.type, enabled=config.precision == "fp16")
    state_parts = dict(optimizers={"G": opt_G, "D": opt_D}, schedulers={"G": sched_G, "D": sched_D},
                       pools={"A": pool_A, "B": pool_B}, scaler=scaler)

    epoch, iter_in_epoch, global_iter = 1, 0, 0
    last_ckpt: Path | None = None      # the newest checkpoint: the resumed one until this call saves another
    if resume:
        folder = latest_checkpoint(run_dir)
        _load_nets(folder, {"G_A": G_A, "G_B": G_B, "D_A": D_A, "D_B": D_B})
        pos = load_train_state(folder, device=dev, **state_parts)
        epoch, iter_in_epoch, global_iter = pos["epoch"], pos["iter_in_epoch"], pos["global_iter"]
        if pos.get("iters_per_epoch") not in (None, iters_per_epoch):
            raise CheckpointError(f"{run_dir}: the dataset or batch size changed since the checkpoint "
                                  f"({pos['iters_per_epoch']} -> {iters_per_epoch} iterations per epoch)")
        reporter.info(f"resuming {run_dir} from {folder.name}: epoch {epoch}, iteration {global_iter}")
        last_ckpt = folder
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        writer.clean_stale()
        with atomic_path(run_dir / "config.json", overwrite=True) as p:
            p.write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
        if not resume and overwrite:
            for stale in (run_dir / "log.jsonl", run_dir / LATEST_FILE):
                stale.unlink(missing_ok=True)
    if config.log_with:
        accelerator.init_trackers("cyclegan", config={k: v for k, v in config.to_dict().items()
                                                      if isinstance(v, (int, float, str, bool))})
    gens_ddp, discs_ddp = accelerator.prepare(gens, discs)

    total_iters = config.total_epochs * iters_per_epoch
    if config.max_iters is not None:
        total_iters = min(total_iters, config.max_iters)

    def position() -> dict[str, int]:
        return {"epoch": epoch, "iter_in_epoch": iter_in_epoch, "global_iter": global_iter,
                "iters_per_epoch": iters_per_epoch}

    def save(name: str, with_state: bool = True) -> Path | None:
        accelerator.wait_for_everyone()
        path = None
        if is_main:
            nets = {"G_A": (G_A, g_cfg_a), "G_B": (G_B, g_cfg_b), "D_A": (D_A, d_cfg_a), "D_B": (D_B, d_cfg_b)}
            state_fn = (lambda folder: save_train_state(folder, position=position(), **state_parts)) \
                if with_state else None
            path = writer.write(name, nets, state_fn, update_latest=with_state)
        accelerator.wait_for_everyone()
        return path

    loss_sums = torch.zeros(len(LOSS_NAMES), device=dev)
    loss_count = 0
    last_losses: dict[str, float] = {}
    start_iter = global_iter
    t_start = time.perf_counter()
    t_log = t_start
    log_path = run_dir / "log.jsonl"
    stop = _StopSignal()
    interrupted = False

    def check_finite(where: str) -> None:
        nonlocal loss_sums
        if not bool(torch.isfinite(loss_sums).all()):
            bad = [n for n, v in zip(LOSS_NAMES, loss_sums.tolist()) if not math.isfinite(v)]
            raise NumericalError(f"loss {', '.join(bad)} became NaN/inf near iteration {global_iter} ({where}); "
                                 f"the last good checkpoint is kept"
                                 + (f" ({last_ckpt})" if last_ckpt else "")
                                 + " — try a lower --lr or --precision fp32")

    with stop, reporter.progress(total_iters, "train", completed=global_iter) as advance:
        while epoch <= config.total_epochs and global_iter < total_iters:
            plan = epoch_plan(n_a, n_b, epoch, config.seed, config.serial_batches)
            plan += plan[: per_rank * world - len(plan)]  # equal shards, like DistributedSampler
            shard = plan[rank::world]
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=config.batch_size, sampler=shard[iter_in_epoch * config.batch_size:],
                num_workers=min(config.num_workers, os.cpu_count() or 1), pin_memory=dev.type == "cuda",
                persistent_workers=False, generator=torch.Generator().manual_seed(config.seed + epoch))
            for batch in loader:
                real_A = batch["A"].to(dev, non_blocking=True, memory_format=memory_format)
                real_B = batch["B"].to(dev, non_blocking=True, memory_format=memory_format)

                # ---- generators: GAN + cycle + identity, discriminators frozen
                discs.requires_grad_(False)
                with autocast(dev, config.precision):
                    out = gens_ddp(real_A, real_B)
                    pred_fake_B = D_A(out["fake_B"])
                    pred_fake_A = D_B(out["fake_A"])
                loss_G_A = gan_loss(pred_fake_B, True, config.gan_mode, for_discriminator=False)
                loss_G_B = gan_loss(pred_fake_A, True, config.gan_mode, for_discriminator=False)
                loss_cyc_A = (out["rec_A"].float() - real_A).abs().mean() * config.lambda_A
                loss_cyc_B = (out["rec_B"].float() - real_B).abs().mean() * config.lambda_B
                if identity:
                    loss_idt_A = (out["idt_A"].float() - real_B).abs().mean() * config.lambda_B \
                        * config.lambda_identity
                    loss_idt_B = (out["idt_B"].float() - real_A).abs().mean() * config.lambda_A \
                        * config.lambda_identity
                else:
                    loss_idt_A = loss_idt_B = torch.zeros((), device=dev)
                loss_G = loss_G_A + loss_G_B + loss_cyc_A + loss_cyc_B + loss_idt_A + loss_idt_B
                opt_G.zero_grad(set_to_none=True)
                scaler.scale(loss_G).backward()
                scaler.step(opt_G)

                # ---- discriminators: real vs pooled fake
                discs.requires_grad_(True)
                # one memory format whatever the pool holds (restored pool images are contiguous): same kernels,
                # same numerics, so a resumed run matches an uninterrupted one bit for bit
                fake_B_pool = pool_B.query(out["fake_B"].detach()).contiguous(memory_format=memory_format)
                fake_A_pool = pool_A.query(out["fake_A"].detach()).contiguous(memory_format=memory_format)
                with autocast(dev, config.precision):
                    d = discs_ddp(real_A, real_B, fake_A_pool, fake_B_pool)
                loss_D_A = discriminator_loss(d["D_A_real"], d["D_A_fake"], config.gan_mode)
                loss_D_B = discriminator_loss(d["D_B_real"], d["D_B_fake"], config.gan_mode)
                opt_D.zero_grad(set_to_none=True)
                scaler.scale(loss_D_A + loss_D_B).backward()
                scaler.step(opt_D)
                scaler.update()

                global_iter += 1
                iter_in_epoch += 1
                losses = torch.stack([loss_D_A, loss_G_A, loss_cyc_A, loss_idt_A,
                                      loss_D_B, loss_G_B, loss_cyc_B, loss_idt_B]).detach().float()
                loss_sums += losses
                loss_count += 1
                advance(1)

                if global_iter % config.log_every == 0 or global_iter == total_iters:
                    check_finite("log")
                    means = (loss_sums / loss_count).tolist()
                    last_losses = dict(zip(LOSS_NAMES, means))
                    now = time.perf_counter()
                    record = {"epoch": epoch, "iter": global_iter, "lr": opt_G.param_groups[0]["lr"],
                              "sec_per_iter": (now - t_log) / loss_count, **last_losses}
                    t_log = now
                    loss_sums.zero_()
                    loss_count = 0
                    if is_main:
                        with open(log_path, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps(record) + "\n")
                    if config.log_with:
                        accelerator.log(last_losses, step=global_iter)
                    advance(0, status=" ".join(f"{k} {v:.3f}" for k, v in last_losses.items()
                                               if k in ("G_A", "cycle_A", "D_A", "G_B", "cycle_B", "D_B")))
                if is_main and global_iter % config.sample_every == 0:
                    with torch.no_grad():
                        grid = _sample_grid([real_A, out["fake_B"], out["rec_A"], real_B, out["fake_A"],
                                             out["rec_B"]])
                    save_image(grid, run_dir / "samples" / f"iter_{global_iter:08d}.png", overwrite=True)

                stop_now = stop.requested is not None
                if world > 1:
                    flag = torch.tensor([1.0 if stop_now else 0.0], device=dev)
                    stop_now = bool(accelerator.reduce(flag, reduction="sum").item() > 0)
                if iter_in_epoch >= iters_per_epoch:
                    break
                if global_iter % config.save_every == 0 or global_iter >= total_iters or stop_now:
                    if loss_count:
                        check_finite("save")
                    last_ckpt = save(f"iter_{global_iter:08d}")
                if stop_now:
                    interrupted = True
                    break
                if global_iter >= total_iters:
                    break
            if interrupted or (global_iter >= total_iters and iter_in_epoch < iters_per_epoch):
                break
            # ---- end of epoch: LR decay, epoch snapshot (weights only) and a resumable checkpoint
            sched_G.step()
            sched_D.step()
            finished = epoch
            epoch += 1
            iter_in_epoch = 0
            if loss_count:
                check_finite("epoch end")
            if finished % config.save_epoch_every == 0:
                save(f"epoch_{finished:04d}", with_state=False)
            last_ckpt = save(f"iter_{global_iter:08d}")
            if stop.requested is not None:
                interrupted = True
                break

    if config.log_with:
        accelerator.end_training()
    result = TrainResult(run_dir, global_iter, epoch - 1, last_ckpt, last_losses,
                         time.perf_counter() - t_start, interrupted,
                         nets={"G_A": G_A, "G_B": G_B, "D_A": D_A, "D_B": D_B}, start_iteration=start_iter)
    if interrupted:
        raise Interrupted(f"interrupted by {stop.requested}: saved {last_ckpt}; continue with --resume")
    return result
