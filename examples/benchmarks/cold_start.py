"""Benchmark: start-up time of the command line (`i2i --help` and each command's `--help`), in fresh processes.

Torch, diffusers and transformers are imported lazily, only by commands that run models, so help and argument
errors come back at once. Prints a table (median and worst of ``--repeats`` runs after one warm-up, which fills the
OS file cache) and one JSON line. Usage:

    python examples/benchmarks/cold_start.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

COMMANDS = (["--help"], ["cyclegan", "--help"], ["cyclegan", "train", "--help"], ["cyclegan", "translate", "--help"],
            ["freecontrol", "--help"], ["freecontrol", "bases", "--help"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    results = {}
    for cmd in COMMANDS:
        argv = [sys.executable, "-m", "i2i", *cmd]
        subprocess.run(argv, check=True, capture_output=True)        # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        results["i2i " + " ".join(cmd)] = {"median_s": round(statistics.median(times), 3),
                                           "max_s": round(max(times), 3)}
    width = max(map(len, results)) + 2
    print(f"{'command':<{width}}{'median s':>10}{'max s':>10}")
    for name, r in results.items():
        print(f"{name:<{width}}{r['median_s']:>10.3f}{r['max_s']:>10.3f}")
    print(json.dumps({"benchmark": "cold_start",
                      "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
                      "versions": {"python": platform.python_version()},
                      "settings": {"repeats": args.repeats}, "results": results}))


if __name__ == "__main__":
    main()
