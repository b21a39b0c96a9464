"""Benchmark: seconds per training step of two methods' builtin:shapes presets, measured side by side in one
process (the steps of the two methods alternate in blocks, so a change in the machine's load hits both alike).

Each method starts from the config ``i2i cyclegan train builtin:shapes --model M`` uses (``default_config(M,
shapes=True)``), with optional JSON overrides, and steps on fixed random batches of the preset's batch size and
crop. An entry of ``--models`` may be ``LABEL=MODEL`` to time one method under two configs (the overrides are keyed
by label). Prints the median of the per-block means for each, their ratio to the first, and one JSON line. Usage:

    python examples/benchmarks/shapes_step_time.py --models cyclegan,fastcut --threads 1 --rounds 8 --block 20
    python examples/benchmarks/shapes_step_time.py --models cyclegan,fastcut,normal=fastcut \
        --overrides '{"normal": {"init_type": "normal"}}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from i2i.cyclegan.methods import get_method
from i2i.cyclegan.run_config import default_config, merge_config
from i2i.cyclegan.context import StepContext


def build(model: str, overrides: dict):
    config = merge_config(default_config(model, shapes=True), overrides)
    ctx = StepContext(torch.device("cpu"), "fp32", torch.contiguous_format,
                      torch.amp.GradScaler("cpu", enabled=False))
    method = get_method(model)(config, ctx)
    shape = (config.batch_size, 3, config.crop_size, config.crop_size)
    return method, torch.rand(shape) * 2 - 1, torch.rand(shape) * 2 - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="cyclegan,fastcut")
    ap.add_argument("--overrides", default="{}", help="JSON: {label: TrainConfig overrides}")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--block", type=int, default=20, help="steps of one method before switching")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    entries = [e.partition("=") for e in args.models.split(",")]
    models = [label for label, _, _ in entries]
    overrides = json.loads(args.overrides)
    runs = {label: build(model or label, overrides.get(label, {})) for label, _, model in entries}
    for method, a, b in runs.values():            # warm-up
        for _ in range(3):
            method.step(a, b)
    per_block: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(args.rounds):
        for m, (method, a, b) in runs.items():
            t = time.perf_counter()
            for _ in range(args.block):
                method.step(a, b)
            per_block[m].append((time.perf_counter() - t) / args.block)
    med = {m: statistics.median(v) for m, v in per_block.items()}
    for m in models:
        print(f"{m:>10}: {med[m]:.4f} s/step (median of {args.rounds} blocks of {args.block}; "
              f"{med[m] / med[models[0]]:.2f}x {models[0]})")
    print(json.dumps({"benchmark": "shapes_step_time", "threads": args.threads, "overrides": overrides,
                      "median_s_per_step": med, "blocks": per_block, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
