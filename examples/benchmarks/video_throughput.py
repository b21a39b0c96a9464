"""Benchmark: video translation throughput, i2i's batched threaded path vs a frame-at-a-time loop, and memory.

Both sides run the same generator (resnet_9blocks, instance norm, random weights: speed does not depend on them)
on the same H.264 clip (``--frames`` frames of ``--side`` px, smooth moving content, a tone as audio) and write
H.264 (crf 18):

- ``one frame at a time``: the usual script: decode a frame (PyAV), run the generator on it alone, encode it,
  next; all in one thread, no audio;
- ``i2i``: :func:`i2i.video.translate.translate_video` (decoding and encoding in threads beside the model,
  batches of ``--batch-sizes`` frames, audio copied), as ``i2i cyclegan translate clip.mp4`` runs it.

Both in fp32 and under bf16 autocast. Frames/s is the median of ``--repeats`` passes, the settings taking turns
(so that a change in the machine's load hits all of them alike), after one warm-up pass each. Then the peak
resident memory (``ru_maxrss``) of a fresh process translating clips of each of ``--memory-frames`` frames with
i2i's path (``--memory-ngf``: a narrower generator, quicker, holding the same frames): flat in the clip's length
when frames are not held. Prints a table and one JSON line. Usage:

    python examples/benchmarks/video_throughput.py --frames 24 --side 256 --repeats 3 --memory-frames 50,400
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.networks import define_G
from i2i.cyclegan.translator import TranslateConfig
from i2i.device import autocast
from i2i.video.reading import probe_video, read_frames
from i2i.video.translate import frames_to_tensor, tensor_to_frames, translate_video
from i2i.video.writing import VideoWriter, write_video


def make_clip(path: Path, frames: int, side: int) -> Path:
    """Smooth random colours drifting 2 px a frame (H.264-compressible like footage), a 440 Hz tone."""
    g = np.random.default_rng(0)
    low = g.random((side // 16 + 2, side // 16 + 2 + frames // 8, 3)).astype(np.float32)
    big = torch.nn.functional.interpolate(torch.from_numpy(low).permute(2, 0, 1)[None], scale_factor=16,
                                          mode="bilinear")[0].permute(1, 2, 0).numpy()
    pictures = ((big[:side, 2 * t:2 * t + side] * 255).astype(np.uint8) for t in range(frames))
    rate = 16000
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(frames * rate // 24) / rate))[None].astype(np.float32)
    return write_video(path, pictures, 24, audio=(tone, rate), overwrite=True)


def one_frame_at_a_time(gen: torch.nn.Module, src: Path, out: Path, precision: str) -> int:
    info = probe_video(src)
    count = 0
    with VideoWriter(out, info.width, info.height, info.fps) as writer:
        for frame in read_frames(src):
            with torch.no_grad(), autocast(torch.device("cpu"), precision):
                y = gen(frames_to_tensor([frame.array]))
            writer.write(tensor_to_frames(y)[0])
            count += 1
    return count


def _rss_mib() -> float:
    """The current resident memory of this process (Linux /proc), MiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def memory_child(src: str, precision: str, batch: int, ngf: int) -> None:
    """In a fresh process: translate ``src`` while a thread samples the resident memory every 10 ms; print the
    resident memory just before, the highest sample during it and the process's peak (``ru_maxrss``), MiB."""
    import threading

    torch.manual_seed(0)
    gen_cfg = GeneratorConfig(ngf=ngf)
    gen = define_G(gen_cfg).eval()
    out = Path(tempfile.mkdtemp(prefix="i2i-mem-")) / "out.mp4"
    before, samples, stop = _rss_mib(), [], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(_rss_mib())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    job = translate_video(src, out, gen, gen_cfg, TranslateConfig(batch_size=batch, precision=precision))
    stop.set()
    sampler.join()
    print(json.dumps({"frames": job.frames, "rss_mib_before": round(before, 1),
                      "rss_mib_max_during": round(max(samples), 1),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "fps": round(job.fps, 3), "ngf": ngf}))


def measure_memory(tmp: Path, counts: list[int], side: int, precision: str, batch: int, ngf: int) -> list[dict]:
    results = []
    for n in counts:
        src = make_clip(tmp / f"mem{n}.mp4", n, side)
        proc = subprocess.run([sys.executable, __file__, "--memory-child", str(src), "--precision-child", precision,
                               "--batch-child", str(batch), "--memory-ngf", str(ngf)], capture_output=True, text=True,
                              check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--batch-sizes", default="4", help="i2i batch sizes to try, comma-separated")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-frames", default="50,400", help="clip lengths for the memory check ('' to skip)")
    ap.add_argument("--memory-precision", default="bf16")
    ap.add_argument("--memory-ngf", type=int, default=64, help="generator width for the memory check (a narrower "
                    "one runs faster; the frames held do not depend on it)")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--precision-child", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--batch-child", type=int, default=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.precision_child, args.batch_child, args.memory_ngf)
        return

    torch.manual_seed(0)
    gen_cfg = GeneratorConfig()
    gen = define_G(gen_cfg).eval()
    tmp = Path(tempfile.mkdtemp(prefix="i2i-video-bench-"))
    src = make_clip(tmp / "clip.mp4", args.frames, args.side)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    runs = {}
    for precision in args.precisions.split(","):
        runs[f"one frame at a time, {precision}"] = (
            lambda p=precision: one_frame_at_a_time(gen, src, tmp / "naive.mp4", p))
        for b in batches:
            runs[f"i2i, batch {b}, {precision}"] = (lambda p=precision, b=b: translate_video(
                src, tmp / "i2i.mp4", gen, gen_cfg, TranslateConfig(batch_size=b, precision=p,
                                                                    overwrite=True)).frames)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for name, fn in runs.items():                      # warm-up
        (tmp / "naive.mp4").unlink(missing_ok=True)
        assert fn() == args.frames
    for _ in range(args.repeats):
        for name, fn in runs.items():
            (tmp / "naive.mp4").unlink(missing_ok=True)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    fps = {name: args.frames / statistics.median(t) for name, t in times.items()}
    base = {p: fps[f"one frame at a time, {p}"] for p in args.precisions.split(",")}
    speedup = {name: v / base[name.rsplit(", ", 1)[1]] for name, v in fps.items()}
    print(f"{'':<32}{'frames/s':>10}{'vs loop, same precision':>26}")
    for name in fps:
        print(f"{name:<32}{fps[name]:>10.3f}{speedup[name]:>25.2f}x")
    counts = [int(n) for n in args.memory_frames.split(",") if n]
    memory = measure_memory(tmp, counts, args.side, args.memory_precision, batches[-1],
                            args.memory_ngf) if counts else []
    for row in memory:
        print(f"memory: {row['frames']} frames -> resident {row['rss_mib_before']} MiB before, at most "
              f"{row['rss_mib_max_during']} MiB during (process peak {row['peak_rss_mib']} MiB)")
    print(json.dumps({
        "benchmark": "video_throughput",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "python": platform.python_version(),
                     "av": __import__("av").__version__},
        "settings": vars(args), "frames_per_second": {k: round(v, 3) for k, v in fps.items()},
        "speedup_vs_loop": {k: round(v, 2) for k, v in speedup.items()},
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()}, "memory": memory}))


if __name__ == "__main__":
    main()
