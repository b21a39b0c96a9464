"""Benchmark: a candidate builtin:shapes preset, scored when stopped at two thirds of its iterations and at the end.

Trains the builtin:shapes preset of ``--model`` (the CLI's starting config) with the overrides given as JSON
(e.g. ``'{"generator": {"ngf": 16}, "options": {"lambda_identity": 2}}'``)
to ``--stop-fraction`` of its iterations, evaluates that checkpoint as ``i2i cyclegan eval`` does (200 unseen
images per direction), resumes to the end (bit-identical to an uninterrupted run on the CPU), evaluates again, and
prints the seconds per iteration, both sets of accuracies and one JSON line. This is how the shipped preset was
chosen (docs/cyclegan.md). Usage:

    python examples/benchmarks/shapes_preset.py --overrides '{}' --run-dir /tmp/preset
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from i2i.cyclegan.config import TrainConfig
from i2i.cyclegan.evaluate import EvalConfig, evaluate
from i2i.cyclegan.run_config import default_config, merge_config
from i2i.cyclegan.trainer import train

ACCURACIES = ("shape_accuracy", "colour_accuracy", "position_accuracy")


def candidate(model: str, overrides: dict, run_dir: str) -> TrainConfig:
    """The config ``i2i cyclegan train builtin:shapes --model MODEL`` starts from, with ``overrides`` merged in
    (network configs and ``options`` as partial dicts)."""
    return merge_config(default_config(model, shapes=True), {**overrides, "run_dir": run_dir})


def score(run_dir: str, tag: str, limit: int | None) -> dict:
    summary = evaluate(run_dir, f"{run_dir}/eval_{tag}", EvalConfig(limit=limit), "cpu", overwrite=True)
    return {d: {k: round(summary[d][k], 3) for k in ACCURACIES} for d in ("AtoB", "BtoA") if d in summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cyclegan", help="training method (cyclegan, cut, fastcut)")
    ap.add_argument("--overrides", default="{}", help="JSON: TrainConfig fields to change in the method's preset")
    ap.add_argument("--run-dir", default="runs/preset-candidate")
    ap.add_argument("--stop-fraction", type=float, default=2 / 3)
    ap.add_argument("--max-iters", type=int, default=None, help="cap the total (for a quick check)")
    ap.add_argument("--limit", type=int, default=None, help="eval images per direction (default 200)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = candidate(args.model, json.loads(args.overrides), args.run_dir)
    total = -(-cfg.shapes_count // cfg.batch_size) * cfg.total_epochs
    total = min(total, args.max_iters or total)
    stop = max(1, round(total * args.stop_fraction))
    t0 = time.perf_counter()
    train(dataclasses.replace(cfg, max_iters=stop), overwrite=True)
    t_stop = time.perf_counter() - t0
    at_stop = score(args.run_dir, "stop", args.limit)
    t0 = time.perf_counter()
    train(dataclasses.replace(cfg, max_iters=total), resume=True)
    t_total = t_stop + time.perf_counter() - t0
    at_end = score(args.run_dir, "end", args.limit)

    print(f"{total} iterations ({cfg.total_epochs} epochs of {-(-cfg.shapes_count // cfg.batch_size)}), "
          f"{t_total / total:.3f} s/iteration, {t_total:.0f} s training in all ({args.threads} threads)")
    for name, result in ((f"stopped at {stop}", at_stop), (f"end ({total})", at_end)):
        print(f"{name:>16}: " + "; ".join(f"{d} " + ", ".join(f"{k.split('_')[0]} {v:.1%}" for k, v in r.items())
                                           for d, r in result.items()))
    print(json.dumps({"benchmark": "shapes_preset", "model": args.model,
                      "overrides": json.loads(args.overrides), "iterations": total,
                      "stop_iteration": stop, "threads": args.threads, "seconds_per_iteration": t_total / total,
                      "train_seconds": t_total, "at_stop": at_stop, "at_end": at_end,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
