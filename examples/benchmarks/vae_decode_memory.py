"""Benchmark: peak memory and time of the VAE decode, full against tiled (``--vae-decode``), per precision.

Decodes one random latent with an SD/SDXL-shaped ``AutoencoderKL`` (random weights: memory and time do not
depend on the weight values) through ``i2i.diffusion.vae.decode_latents``, once per mode and dtype. On a GPU the
peak is the CUDA allocator's peak over the decode alone (weights excluded); on a CPU each case runs in a fresh
process and the peak is that process's peak RSS minus its RSS before the decode. Usage:

    python examples/benchmarks/vae_decode_memory.py --size 1024                  # SDXL's size, CPU, fp32
    python examples/benchmarks/vae_decode_memory.py --size 1024 --device cuda --dtypes fp32,bf16,fp16

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from freecontrol_speed import _sd_vae  # noqa: E402  (the SD/SDXL-shaped VAE of the speed benchmark)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def rss_gib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**30


def tiny_vae():
    """SD's VAE layout at 1/16 of its widths (for a quick check that the script runs)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         block_out_channels=(8, 16, 32, 32), layers_per_block=1, latent_channels=4,
                         norm_num_groups=8, sample_size=64)


def one_case(size: int, mode: str, dtype: str, device: str, tiny: bool = False) -> dict:
    from i2i.diffusion.vae import decode_latents

    torch.manual_seed(0)
    dev = torch.device(device)
    vae = (tiny_vae() if tiny else _sd_vae(size, 0.13025)).to(dev, DTYPES[dtype]).eval().requires_grad_(False)
    z = torch.randn(1, 4, size // 8, size // 8, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_gib()
    t0 = time.perf_counter()
    out = decode_latents(vae, z, mode)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20 - base   # KiB on Linux
    return {"mode": mode, "dtype": dtype, "seconds": round(time.perf_counter() - t0, 2),
            "peak_gib": round(peak, 3), "finite": bool(torch.isfinite(out).all()), "shape": list(out.shape)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="image side in pixels")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtypes", default="fp32", help="comma-separated: fp32, bf16, fp16")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--tiny", action="store_true", help="a tiny VAE of the same layout (a quick check)")
    ap.add_argument("--case", help=argparse.SUPPRESS)      # MODE,DTYPE: run one case here (CPU child process)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        mode, dtype = args.case.split(",")
        print(json.dumps(one_case(args.size, mode, dtype, args.device, args.tiny)))
        return
    results = []
    for dtype in args.dtypes.split(","):
        for mode in ("full", "tiled"):
            if torch.device(args.device).type == "cuda":
                results.append(one_case(args.size, mode, dtype, args.device, args.tiny))
                continue
            child = subprocess.run([sys.executable, __file__, "--size", str(args.size), "--device", args.device,
                                    "--threads", str(args.threads), "--case", f"{mode},{dtype}",
                                    *(["--tiny"] if args.tiny else [])],
                                   capture_output=True, text=True, check=True)
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    for r in results:
        print(f"{r['dtype']:>5} {r['mode']:>6}: peak {r['peak_gib']:.2f} GiB over the weights, {r['seconds']:.1f} s")
    print(json.dumps({"benchmark": "vae_decode_memory", "size": args.size, "device": args.device, "tiny": args.tiny,
                      "threads": args.threads, "machine": platform.processor() or platform.machine(),
                      "torch": torch.__version__, "results": results}))


if __name__ == "__main__":
    main()
