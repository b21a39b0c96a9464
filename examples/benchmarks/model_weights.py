"""Benchmark: the weights' memory of each component of an SD-1.5- or SDXL-shaped pipeline, counted on the meta
device (no memory, no download): parameters and GiB at the precision each runs at in i2i (UNet and text encoders
at --precision, the model's own VAE in float32). Usage:

    python examples/benchmarks/model_weights.py --model sdxl-random --precision bf16
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch

from freecontrol_speed import random_pipeline

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sdxl-random", choices=("sd15-random", "sdxl-random"))
    ap.add_argument("--precision", default="bf16", choices=tuple(DTYPES))
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = random_pipeline(args.model, torch.device("meta"), DTYPES[args.precision])
    results = {}
    for name in ("unet", "text_encoder", "text_encoder_2", "vae"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        n = sum(p.numel() for p in module.parameters())
        size = torch.finfo(torch.float32 if name == "vae" else DTYPES[args.precision]).bits // 8
        results[name] = {"params_m": round(n / 1e6, 1), "gib": round(n * size / 2**30, 3)}
        print(f"{name:>15}: {n / 1e6:7.0f} M parameters, {n * size / 2**30:.2f} GiB")
    total = sum(r["gib"] for r in results.values())
    text = sum(r["gib"] for k, r in results.items() if k.startswith("text"))
    print(f"{'all':>15}: {total:.2f} GiB; without the text encoders {total - text:.2f} GiB")
    print(json.dumps({"benchmark": "model_weights", "model": args.model, "precision": args.precision,
                      "results": results, "total_gib": round(total, 3),
                      "without_text_encoders_gib": round(total - text, 3)}))


if __name__ == "__main__":
    main()
