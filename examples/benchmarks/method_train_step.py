"""Benchmark: one training iteration of CycleGAN, CUT and FastCUT side by side, with each method's reference
defaults (resnet_9blocks G, basic PatchGAN D, instance norm, lsgan, batch 1; CUT/FastCUT anti-aliased, PatchNCE on
5 layers x 256 patches), on random 3 x S x S inputs.

Each method runs in its own fresh process, one after the other, so the peak resident memory (``ru_maxrss``) of
that process belongs to that method alone; "above baseline" subtracts the process's memory after the imports.
Prints a table and one JSON line. Usage:

    python examples/benchmarks/method_train_step.py --size 128 --iters 5 --warmup 2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

MODELS = ("cyclegan", "cut", "fastcut")


def measure(model: str, size: int, iters: int, warmup: int, threads: int, ngf: int = 64) -> dict:
    """One method in this process: median seconds per step and peak memory."""
    import torch

    from i2i.cyclegan.methods import get_method
    from i2i.cyclegan.run_config import default_config, merge_config
    from i2i.cyclegan.context import StepContext

    torch.set_num_threads(threads)
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.manual_seed(0)
    config = merge_config(default_config(model), {"crop_size": size, "load_size": size, "generator": {"ngf": ngf},
                                                  "discriminator": {"ndf": ngf}})
    ctx = StepContext(torch.device("cpu"), "fp32", torch.contiguous_format,
                      torch.amp.GradScaler("cpu", enabled=False))
    method = get_method(model)(config, ctx)
    params = sum(p.numel() for s in method.networks().values() for p in s.net.parameters())
    real_A, real_B = torch.rand(1, 3, size, size) * 2 - 1, torch.rand(1, 3, size, size) * 2 - 1
    times = []
    for i in range(warmup + iters):
        t = time.perf_counter()
        method.step(real_A, real_B)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": model, "median_s": statistics.median(times), "times_s": times, "params": params,
            "peak_rss_mb": round(peak_mb, 1), "peak_above_baseline_mb": round(peak_mb - base_mb, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--ngf", type=int, default=64, help="Generator and discriminator base width (default: 64).")
    ap.add_argument("--one", help=argparse.SUPPRESS)          # internal: measure one model in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.size, args.iters, args.warmup, args.threads, args.ngf)))
        return
    rows = []
    for model in args.models.split(","):
        proc = subprocess.run([sys.executable, __file__, "--one", model, "--size", str(args.size), "--iters",
                               str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads),
                               "--ngf", str(args.ngf)],
                              capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ref = next((r["median_s"] for r in rows if r["model"] == "cyclegan"), None)
    print(f"{'method':<10} {'s/iter':>8} {'vs CycleGAN':>12} {'params':>12} {'peak RSS MB':>12} {'above base':>11}",
          file=sys.stderr)
    for r in rows:
        r["speedup_vs_cyclegan"] = round(ref / r["median_s"], 2) if ref else None
        print(f"{r['model']:<10} {r['median_s']:>8.3f} {str(r['speedup_vs_cyclegan']) + 'x':>12} {r['params']:>12,} "
              f"{r['peak_rss_mb']:>12.0f} {r['peak_above_baseline_mb']:>11.0f}", file=sys.stderr)
    import torch

    print(json.dumps({"benchmark": "method_train_step", "machine": platform.processor() or platform.machine(),
                      "torch": torch.__version__, "size": args.size, "iters": args.iters, "warmup": args.warmup,
                      "threads": args.threads, "ngf": args.ngf, "results": rows}))


if __name__ == "__main__":
    main()
