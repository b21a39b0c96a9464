"""Benchmark: CycleGAN translation throughput over a folder of images, i2i vs a one-image-at-a-time loop.

Both sides run the same generator (resnet_9blocks, instance norm, random weights: speed does not depend on them)
on the same folder of PNG files and write a PNG per input:

- ``one at a time``: the reference implementation's test loop re-created as a baseline: open, convert, run the
  generator on one image under ``torch.no_grad()``, save, next;
- ``i2i``: :func:`i2i.cyclegan.translator.translate_images` (decoding and prefetch in DataLoader workers,
  batches, ``inference_mode``, channels_last on CUDA; by default the batch size and workers i2i picks for the
  device), in fp32 and with ``--precision bf16``.

Images/s is the median over ``--repeats`` passes over the folder after one warm-up pass. The last row is the compute
bound: the generator's FLOPs per image at the machine's fp32 matrix-multiply peak (``roofline.py``), the images/s
that no fp32 implementation doing the same multiply-adds could exceed on this machine. Prints a table and one JSON
line. Usage:

    python examples/benchmarks/translate_throughput.py --images 24 --size 256 --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.networks import define_G
from i2i.cyclegan.translator import TranslateConfig, translate_images
from i2i.images import expand_inputs, image_to_tensor, tensor_to_image
from roofline import count_gflop, fp32_matmul_peak


def one_at_a_time(gen: torch.nn.Module, files: list[Path], out: Path) -> None:
    for path in files:
        x = image_to_tensor(Image.open(path).convert("RGB"))[None]
        with torch.no_grad():
            y = gen(x)
        tensor_to_image(y[0]).save(out / path.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=None, help="default: i2i's for the device")
    ap.add_argument("--num-workers", type=int, default=None, help="default: i2i's for the device")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    gen_cfg = GeneratorConfig()
    gen = define_G(gen_cfg).eval()
    tmp = Path(tempfile.mkdtemp(prefix="i2i-bench-"))
    src = tmp / "in"
    src.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(args.images):     # smooth random images (PNG-compressible like photos, not like noise)
        low = torch.rand(3, args.size // 16, args.size // 16, generator=g) * 2 - 1
        img = torch.nn.functional.interpolate(low[None], size=(args.size, args.size), mode="bilinear")[0]
        tensor_to_image(img).save(src / f"{i:04d}.png")
    files = sorted(src.glob("*.png"))
    items = expand_inputs([src])

    def run_reference() -> None:
        out = Path(tempfile.mkdtemp(dir=tmp))
        one_at_a_time(gen, files, out)

    def run_i2i(precision: str) -> None:
        out = Path(tempfile.mkdtemp(dir=tmp))
        cfg = TranslateConfig(batch_size=args.batch_size, precision=precision, num_workers=args.num_workers)
        result = translate_images(items, gen, gen_cfg, out, cfg, device="cpu")
        assert len(result.ok) == len(files), result.failed

    rows: dict[str, float] = {}
    for name, fn in (("one at a time (reference loop), fp32", run_reference),
                     ("i2i translate, fp32", lambda: run_i2i("fp32")),
                     ("i2i translate, bf16", lambda: run_i2i("bf16"))):
        gen.to(memory_format=torch.contiguous_format)     # every pass starts from the same layout (in place)
        fn()                                              # warm-up pass
        times = []
        for _ in range(args.repeats):
            gen.to(memory_format=torch.contiguous_format)
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        rows[name] = len(files) / statistics.median(times)
    base = rows["one at a time (reference loop), fp32"]
    with torch.inference_mode():
        gflop = count_gflop(lambda: gen(torch.zeros(1, 3, args.size, args.size)))
    peak = fp32_matmul_peak()
    bound = f"bound: {gflop:.1f} GFLOP/image at {peak:.0f} GFLOP/s fp32"
    width = max(map(len, [*rows, bound])) + 2
    print(f"{'':<{width}}{'images/s':>10}{'speed-up':>10}{'GFLOP/s':>10}")
    for name, ips in [*rows.items(), (bound, peak / gflop)]:
        print(f"{name:<{width}}{ips:>10.3f}{ips / base:>9.2f}x{ips * gflop:>10.0f}")
    import i2i

    print(json.dumps({
        "benchmark": "translate_throughput",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "python": platform.python_version(),
                     "i2i": getattr(i2i, "__version__", "?")},
        "settings": {"images": args.images, "size": args.size, "batch_size": args.batch_size,
                     "num_workers": args.num_workers, "resolved": dataclasses.asdict(
                         TranslateConfig(args.batch_size, num_workers=args.num_workers).for_device(
                             torch.device("cpu"))), "repeats": args.repeats, "netG": gen_cfg.arch},
        "gflop_per_image": round(gflop, 1), "fp32_matmul_peak_gflops": round(peak),
        "images_per_second": {k: round(v, 3) for k, v in rows.items()},
        "speedup": {k: round(v / base, 2) for k, v in rows.items()}}))


if __name__ == "__main__":
    main()
