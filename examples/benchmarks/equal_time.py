"""Benchmark: CycleGAN, CUT and FastCUT trained side by side for the same wall-clock time, then scored.

All methods start at the same moment, each in its own process with the same number of threads, on the same
dataset and settings (the reference defaults of each method plus the flags given after ``--``). ``--minutes``
after all of them have logged their first iterations, every run still training gets SIGTERM, which saves a
checkpoint (the same as Ctrl-C), and each run is evaluated with ``i2i cyclegan eval --metrics ...``. A run whose
schedule ends sooner (e.g. the shapes preset's 600 iterations) stops there; the table reports each run's
iterations. Give ``--n-epochs`` after ``--`` to make every schedule outlast the budget. Prints one table and one
JSON line. Usage:

    python examples/benchmarks/equal_time.py DATAROOT --minutes 15 --out runs/equal-time \\
        --metrics kid --features random-cnn -- --crop-size 64 --load-size 72

On builtin:shapes (no flags after ``--``) the runs use the shapes preset and eval reports the reader's accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("cyclegan", "cut", "fastcut")


def i2i(args: list[str], threads: int, **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "i2i", *args], env=env, **kw)


def iterations(run_dir: Path) -> int:
    lines = (run_dir / "log.jsonl").read_text().splitlines() if (run_dir / "log.jsonl").exists() else []
    return json.loads(lines[-1])["iter"] if lines else 0


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataroot")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--out", default="runs/equal-time")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", type=int, default=1, help="threads per run (all runs share the machine)")
    ap.add_argument("--metrics", default="", help="eval metrics for image folders, e.g. fid,kid")
    ap.add_argument("--features", default="inception", help="feature extractor for the metrics")
    ap.add_argument("--limit", type=int, default=None, help="eval images per direction (default: all)")
    args = ap.parse_args(argv)
    if args.metrics:   # an unknown or removed metric stops here, not after the training budget
        from i2i.cyclegan.evaluate import EvalConfig
        from i2i.errors import UsageError

        try:
            EvalConfig(metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()))
        except UsageError as exc:
            ap.error(str(exc))
    out = Path(args.out)
    methods = args.methods.split(",")

    procs = {}
    for m in methods:
        cmd = ["cyclegan", "train", args.dataroot, "--model", m, "--run-dir", str(out / m), "--quiet",
               "--log-every", "10", "--max-iters", "10000000", "--overwrite", *extra]
        procs[m] = i2i(cmd, args.threads)
    def check() -> None:
        failed = {m: p.returncode for m, p in procs.items() if p.poll() not in (None, 0)}
        if failed:
            sys.exit(f"training failed: {failed}")

    # The clock starts when every run has logged its first iterations (start-up and data loading excluded), and a
    # stop request then always finds a run that can save.
    while not all((out / m / "log.jsonl").exists() or procs[m].poll() is not None for m in methods):
        check()
        time.sleep(0.2)
    end = time.monotonic() + args.minutes * 60
    while time.monotonic() < end:
        check()
        time.sleep(0.2)
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for m, p in procs.items():
        if p.wait() not in (0, 130, 143):
            sys.exit(f"{m}: training failed (exit {p.returncode})")

    results = {}
    for m in methods:
        cmd = ["cyclegan", "eval", str(out / m), "--json", "--overwrite", "--quiet"]
        if args.metrics:
            cmd += ["--metrics", args.metrics, "--features", args.features]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        done = i2i(cmd, 2, stdout=subprocess.PIPE, text=True)
        text, _ = done.communicate()
        if done.returncode != 0:
            sys.exit(f"{m}: eval failed (exit {done.returncode})")
        results[m] = {"iterations": iterations(out / m), "eval": json.loads(text)}
    for m, r in results.items():
        print(f"{m:>9}: {r['iterations']} iterations; " + json.dumps(r["eval"].get("AtoB", r["eval"])))
    print(json.dumps({"benchmark": "equal_time", "dataroot": args.dataroot, "minutes": args.minutes,
                      "threads": args.threads, "flags": extra, "results": results}))


if __name__ == "__main__":
    main()
