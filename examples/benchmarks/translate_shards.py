"""Benchmark: a whole translate job split over processes on one machine, images/s of the job and memory per process.

The same folder of PNG images is translated by ``i2i cyclegan translate`` (resnet_9blocks, random weights: speed
does not depend on them) in three layouts, run one after the other in each round, with the rounds repeated:

- 1 process, 1 thread; 1 process, ``--threads`` threads (default 2: the whole of a 2-core machine);
- ``--processes`` processes (default 2) at 1 thread each, each taking its share from ``RANK`` / ``WORLD_SIZE`` as
  under torchrun, all started at once.

A job's time runs from the start of its first process to the end of its last, so it includes each process's start
(Python, torch, the generator); images/s is the median over rounds. Peak resident memory (``ru_maxrss``) is read
per process when it ends. The outputs of the sharded job are checked to be byte-identical to the 1-thread single
process's. Prints a table and one JSON line. Usage:

    python examples/benchmarks/translate_shards.py --images 48 --size 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from i2i.cyclegan.checkpoint import save_generator
from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.networks import define_G
from i2i.images import tensor_to_image


def make_inputs(folder: Path, count: int, size: int) -> None:
    """Smooth random images (PNG-compressible like photos, not like noise)."""
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(count):
        low = torch.rand(3, max(1, size // 16), max(1, size // 16), generator=g) * 2 - 1
        img = torch.nn.functional.interpolate(low[None], size=(size, size), mode="bilinear")[0]
        tensor_to_image(img).save(folder / f"{i:04d}.png")


def run_job(src: Path, gen: Path, out: Path, processes: int, threads: int) -> dict:
    """One translate job over ``processes`` processes at ``threads`` threads each: wall time and per-process peak
    memory."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "i2i", "cyclegan", "translate", str(src), "-c", str(gen), "-o", str(out), "--quiet"]
    start = time.perf_counter()
    pids = []
    for rank in range(processes):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "RANK": str(rank), "WORLD_SIZE": str(processes)}
        pids.append(subprocess.Popen(cmd, env=env).pid)
    rss = []
    for pid in pids:
        _, status, usage = os.wait4(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"a translate process exited {os.waitstatus_to_exitcode(status)}")
        rss.append(usage.ru_maxrss / 1024)          # KiB on Linux -> MiB
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": rss}


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="threads of the single-process comparison row")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="i2i-shards-"))
    torch.manual_seed(0)
    gen_cfg = GeneratorConfig()                     # resnet_9blocks, ngf 64, instance norm
    save_generator(tmp / "G.safetensors", define_G(gen_cfg), gen_cfg)
    make_inputs(tmp / "in", args.images, args.size)
    layouts = {"1 process x 1 thread": (1, 1), f"1 process x {args.threads} threads": (1, args.threads),
               f"{args.processes} processes x 1 thread": (args.processes, 1)}
    runs: dict[str, list[dict]] = {name: [] for name in layouts}
    for _ in range(args.repeats):                   # rounds: each layout once per round, in turn
        for name, (processes, threads) in layouts.items():
            runs[name].append(run_job(tmp / "in", tmp / "G.safetensors", tmp / name.replace(" ", ""), processes,
                                      threads))
    same = tree(tmp / next(iter(layouts)).replace(" ", "")) == tree(tmp / list(layouts)[-1].replace(" ", ""))
    results = {}
    for name, rounds in runs.items():
        seconds = statistics.median(r["seconds"] for r in rounds)
        results[name] = {"images_per_second": round(args.images / seconds, 3), "median_seconds": round(seconds, 2),
                         "seconds": [round(r["seconds"], 2) for r in rounds],
                         "peak_rss_mib_per_process": [round(max(r["peak_rss_mib"][k] for r in rounds))
                                                      for k in range(len(rounds[0]["peak_rss_mib"]))]}
    base = results["1 process x 1 thread"]["images_per_second"]
    width = max(map(len, results)) + 2
    print(f"{'':<{width}}{'images/s':>10}{'vs 1x1':>8}{'job s':>8}  peak RSS per process (MiB)")
    for name, r in results.items():
        print(f"{name:<{width}}{r['images_per_second']:>10.3f}{r['images_per_second'] / base:>7.2f}x"
              f"{r['median_seconds']:>8.1f}  {r['peak_rss_mib_per_process']}")
    print(f"sharded outputs identical to one process's: {same}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({
        "benchmark": "translate_shards",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count()},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "settings": {"images": args.images, "size": args.size, "repeats": args.repeats, "netG": gen_cfg.arch},
        "identical_outputs": same, "results": results}))
    if not same:
        raise SystemExit("the sharded job wrote other files than one process")


if __name__ == "__main__":
    main()
