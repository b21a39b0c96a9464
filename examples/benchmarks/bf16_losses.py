"""Benchmark: does a bf16 CycleGAN run track the fp32 one? Two runs on ``builtin:shapes`` from one seed.

Both runs use the reference defaults (resnet_9blocks, basic PatchGAN, instance norm, lsgan, pool 50, identity 0.5,
batch 1) and the same data order; only ``--precision`` differs (bf16 = autocast; weights, optimizer and losses
stay float32). Prints the mean losses of each logging window side by side, the largest relative gap of the
cycle losses over the second half of the run, and each run's seconds per iteration; then one JSON line. Usage:

    python examples/benchmarks/bf16_losses.py --size 64 --iters 300 --log-every 50
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from i2i.cyclegan.config import TrainConfig
from i2i.cyclegan.trainer import train

SHOWN = ("cycle_A", "cycle_B", "G_A", "G_B", "D_A", "D_B")


def run(precision: str, size: int, iters: int, log_every: int, seed: int, root: Path) -> list[dict]:
    """Train ``iters`` iterations at ``size`` px in ``precision``; the log's records (one per window)."""
    cfg = TrainConfig(dataroot="builtin:shapes", run_dir=str(root / precision), load_size=size, crop_size=size,
                      preprocess="none", max_iters=iters, shapes_count=200, log_every=log_every, sample_every=10**9,
                      save_every=10**9, save_epoch_every=10**6, num_workers=0, seed=seed, precision=precision)
    train(cfg, device="cpu")
    return [json.loads(line) for line in (root / precision / "log.jsonl").read_text().splitlines()]


def largest_gap(fp32: list[dict], bf16: list[dict], names=("cycle_A", "cycle_B")) -> float:
    """Largest |bf16 - fp32| / fp32 of the ``names`` losses over the second half of the windows."""
    half = len(fp32) // 2
    return max(abs(b[n] - a[n]) / abs(a[n]) for a, b in zip(fp32[half:], bf16[half:]) for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="i2i-bf16-") as tmp:
        logs = {p: run(p, args.size, args.iters, args.log_every, args.seed, Path(tmp)) for p in ("fp32", "bf16")}
    print("| iter | " + " | ".join(f"{n} fp32 / bf16" for n in SHOWN) + " |")
    print("|---|" + "---|" * len(SHOWN))
    for a, b in zip(logs["fp32"], logs["bf16"]):
        print(f"| {a['iter']} | " + " | ".join(f"{a[n]:.3f} / {b[n]:.3f}" for n in SHOWN) + " |")
    gap = largest_gap(logs["fp32"], logs["bf16"])
    speed = {p: sum(r["sec_per_iter"] for r in log[1:]) / max(1, len(log) - 1) for p, log in logs.items()}
    print(f"largest cycle-loss gap over the second half: {gap:.1%}; s/iter fp32 {speed['fp32']:.3f}, "
          f"bf16 {speed['bf16']:.3f} (first window left out)")
    print(json.dumps({"benchmark": "bf16_losses", "machine": platform.processor() or platform.machine(),
                      "threads": args.threads, "torch": torch.__version__, "size": args.size, "iters": args.iters,
                      "log_every": args.log_every, "seed": args.seed, "largest_cycle_gap": gap,
                      "sec_per_iter": speed, "logs": logs}))


if __name__ == "__main__":
    main()
