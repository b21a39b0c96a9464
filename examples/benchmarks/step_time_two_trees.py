"""Benchmark: seconds per training step of the builtin:shapes presets under two source trees (e.g. before and
after a refactor), side by side: one worker process per tree, each stepping the same methods on the same fixed
random batches (same seed, same initial weights) in alternating blocks, so that a change in the machine's load hits
both alike. Prints the median of the per-block means per tree and method, new / old, and one JSON line. Usage:

    git archive a714268 | tar -x -C /tmp/old          # the tree to compare with, as files
    python examples/benchmarks/step_time_two_trees.py --old /tmp/old --new . --models cyclegan,fastcut \\
        --rounds 6 --block 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

WORKER = r"""
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
try:                                           # the config assembly moved (issue 25); either tree works
    from i2i.cyclegan.run_config import default_config
except ImportError:
    from i2i.cyclegan.methods import default_config
try:
    from i2i.cyclegan.context import StepContext
except ImportError:
    from i2i.cyclegan.methods.base import StepContext
from i2i.cyclegan.methods import get_method

runs = {}
for model in sys.argv[2].split(","):
    torch.manual_seed(0)
    config = default_config(model, shapes=True)
    layout = torch.channels_last if config.memory_format == "channels_last" else torch.contiguous_format
    ctx = StepContext(torch.device("cpu"), "fp32", layout, torch.amp.GradScaler("cpu", enabled=False))
    method = get_method(model)(config, ctx)
    shape = (config.batch_size, 3, config.crop_size, config.crop_size)
    a, b = [(torch.rand(shape) * 2 - 1).contiguous(memory_format=layout) for _ in range(2)]
    runs[model] = (method, getattr(ctx, "end_step", lambda: None), a, b)
print("ready", flush=True)
for line in sys.stdin:
    model, n = line.split()
    method, end_step, a, b = runs[model]
    t = time.perf_counter()
    for _ in range(int(n)):
        method.step(a, b)
        end_step()                             # what the loop does after a step (a no-op before issue 25)
    print(time.perf_counter() - t, flush=True)
"""


def start(tree: Path, models: str, threads: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()), OMP_NUM_THREADS=str(threads))
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(threads), models], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(tree))
    assert proc.stdout.readline().strip() == "ready", f"worker for {tree} did not start"
    return proc


def block(proc: subprocess.Popen, model: str, n: int) -> float:
    proc.stdin.write(f"{model} {n}\n")
    proc.stdin.flush()
    return float(proc.stdout.readline()) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="the source tree to compare with")
    ap.add_argument("--new", type=Path, default=Path("."))
    ap.add_argument("--models", default="cyclegan,fastcut")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--block", type=int, default=10, help="steps of one tree before switching")
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    models = args.models.split(",")
    workers = {"old": start(args.old, args.models, args.threads), "new": start(args.new, args.models, args.threads)}
    per_block = {tree: {m: [] for m in models} for tree in workers}
    for tree, proc in workers.items():
        for m in models:
            block(proc, m, args.warmup)
    for r in range(args.rounds):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        for m in models:
            for tree in order:
                per_block[tree][m].append(block(workers[tree], m, args.block))
    for proc in workers.values():
        proc.stdin.close()
        proc.wait()
    med = {tree: {m: statistics.median(v) for m, v in d.items()} for tree, d in per_block.items()}
    for m in models:
        print(f"{m:>10}: old {med['old'][m]:.4f} s/step, new {med['new'][m]:.4f} s/step, new/old "
              f"{med['new'][m] / med['old'][m]:.3f} (median of {args.rounds} blocks of {args.block})")
    print(json.dumps({"benchmark": "step_time_two_trees", "old": str(args.old), "new": str(args.new),
                      "threads": args.threads, "median_s_per_step": med, "blocks": per_block}))


if __name__ == "__main__":
    main()
