"""Benchmark: Canny condition maps with OpenCV, scikit-image and kornia, side by side on the same photos.

For each library that is installed: the median time of one Canny map per image size, and how well its map agrees
with the official FreeControl app's (``cv2.Canny(rgb, 100, 200)``): the F1 score of the edge pixels with a 1-pixel
tolerance. Thresholds are converted to each library's scale (scikit-image: grey levels in 0..1 with an unscaled
Sobel, so 100/255 and 200/255; kornia: its normalised Sobel, a further 1/8), each with its own default blur
(scikit-image and kornia smooth first, sigma 1; OpenCV does not). ``+MB``: what installing the library adds to
i2i's other dependencies on disk (itself and the packages it pulls in that i2i does not already need).
Usage:

    python examples/benchmarks/preprocess_libraries.py --images /work/shared/data/horse2zebra-mini/testA --limit 20

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1]
LOW, HIGH = 100, 200


def opencv_canny(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.Canny(rgb, LOW, HIGH) > 0


def skimage_canny(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray
    from skimage.feature import canny

    return canny(rgb2gray(rgb), sigma=1.0, low_threshold=LOW / 255, high_threshold=HIGH / 255)


def kornia_canny(rgb: np.ndarray) -> np.ndarray:
    import kornia
    import torch

    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255
    _, edges = kornia.filters.canny(x, low_threshold=LOW / 255 / 8, high_threshold=HIGH / 255 / 8)
    return edges[0, 0].numpy() > 0


LIBRARIES = {"opencv-python-headless": ("cv2", opencv_canny), "scikit-image": ("skimage", skimage_canny),
             "kornia": ("kornia", kornia_canny)}


def f1_with_tolerance(pred: np.ndarray, ref: np.ndarray, tolerance: int = 1) -> float:
    """F1 of edge pixels where a pixel matches if the other map has an edge within ``tolerance`` pixels."""
    from scipy.ndimage import binary_dilation

    if not pred.any() and not ref.any():
        return 1.0
    grow = np.ones((2 * tolerance + 1, 2 * tolerance + 1), bool)
    precision = (pred & binary_dilation(ref, grow)).sum() / max(pred.sum(), 1)
    recall = (ref & binary_dilation(pred, grow)).sum() / max(ref.sum(), 1)
    return float(2 * precision * recall / max(precision + recall, 1e-12))


def installed_mb(dist: str) -> float:
    """Size on disk of a distribution's installed files (without its dependencies)."""
    files = md.distribution(dist).files or []
    return round(sum(f.locate().stat().st_size for f in files if Path(f.locate()).is_file()) / 2**20, 1)


def requirements(dist: str) -> set[str]:
    """``dist`` and every distribution it needs, transitively (extras left out), as normalised names."""
    import re

    seen: set[str] = set()
    todo = [dist]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo.extend(re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in reqs if "extra ==" not in r)
    return seen


def new_dependencies(dist: str) -> dict[str, float]:
    """What installing ``dist`` adds to i2i's other dependencies: name -> installed MB."""
    try:
        core = set().union(*(requirements(r) for r in ("torch", "diffusers", "transformers", "accelerate", "typer",
                                                         "rich", "pillow", "scipy", "torchmetrics",
                                                         "safetensors", "numpy")))
    except md.PackageNotFoundError:
        core = set()
    sizes = {}
    for name in sorted(requirements(dist) - core):
        try:
            sizes[name] = installed_mb(name)
        except md.PackageNotFoundError:
            pass
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(EXAMPLES / "conditions"), help="folder of photos")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--sizes", default="256,512", help="long sides to time, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".jpg", ".png"))[: args.limit]
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    available = {}
    for dist, (module, fn) in LIBRARIES.items():
        try:
            __import__(module)
        except ImportError:
            continue
        available[dist] = fn
    import cv2
    import torch

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    results: dict[str, dict] = {}
    for dist, fn in available.items():
        added = new_dependencies(dist)
        row: dict = {"version": md.version(dist), "added": added, "added_mb": round(sum(added.values()), 1)}
        row["f1_vs_official"] = round(statistics.mean(f1_with_tolerance(fn(p), opencv_canny(p)) for p in photos), 3)
        for size in (int(s) for s in args.sizes.split(",")):
            scaled = [np.asarray(Image.fromarray(p).resize((size, size), Image.Resampling.BICUBIC)) for p in photos]
            fn(scaled[0])                                   # warm-up (imports, first-call setup)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                for p in scaled:
                    fn(p)
                times.append((time.perf_counter() - start) / len(scaled))
            row[f"ms_per_image_{size}"] = round(1000 * statistics.median(times), 2)
        results[dist] = row
    print(f"{'library':24s} {'version':10s} {'+MB':>6s} {'F1 vs official':>15s} "
          + " ".join(f"{'ms @' + s:>9s}" for s in args.sizes.split(",")))
    for dist, row in results.items():
        print(f"{dist:24s} {row['version']:10s} {row['added_mb']:6.1f} {row['f1_vs_official']:15.3f} "
              + " ".join(f"{row[f'ms_per_image_{s}']:9.2f}" for s in args.sizes.split(",")))
    print(json.dumps({"benchmark": "preprocess_libraries", "images": len(photos), "threads": args.threads,
                      "date": time.strftime("%Y-%m-%d"), "results": results}))


if __name__ == "__main__":
    main()
