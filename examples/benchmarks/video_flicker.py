"""Benchmark: flicker and per-frame quality of video translation, with and without ``--temporal``.

Clips of one moving circle (builtin:shapes' domain A in motion, :func:`i2i.shapes.moving_specs`; sides of
``--side`` px, moving 1-3 px a frame, so under a pixel a frame at the model's 32 px) are written to MP4 and
translated by a builtin:shapes run at ``--size 32``, as ``i2i cyclegan translate`` does, once as they are and once
per temporal weight. The decoded outputs are scored:

- flicker: the warping error of Lai et al. 2018 (:mod:`i2i.video.flicker`), the previous output warped onto the
  current one and compared on non-occluded pixels (values in [0, 1], squared, summed over RGB), with two flows:
  the TRUE motion (the shape's known shift inside the true square, zero on the background, a 1 px band at the
  edges and the uncovered area left out) and Farneback flow estimated on the input frames with the
  forward-backward check (what one would use on a real clip; the filter itself uses DIS flow);
- per-frame quality against the known translation (the square of the same colour in the same place):
  shape and colour read by :func:`i2i.shapes.read_shape`, and IoU with the true square's mask.

Prints a table and one JSON line. Usage:

    python examples/benchmarks/video_flicker.py --run runs/shapes --clips 6 --frames 48 --weights 0.5,0.3,0.7
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from i2i.cyclegan.checkpoint import load_generator, resolve_generator_file
from i2i.cyclegan.translator import TranslateConfig
from i2i.shapes import COLOURS, ShapeSpec, counterpart, iou, moving_specs, read_shape, render, render_mask
from i2i.video.flicker import clip_warping_error, input_flows
from i2i.video.reading import read_frames
from i2i.video.temporal import TemporalConfig
from i2i.video.translate import VideoOptions, translate_video
from i2i.video.writing import write_video


def clip_specs(index: int, frames: int) -> list[ShapeSpec]:
    rng = random.Random(f"video-flicker-{index}")
    size = rng.uniform(0.18, 0.26)
    start = ShapeSpec("circle", sorted(COLOURS)[index % len(COLOURS)], rng.uniform(0.35, 0.65),
                      rng.uniform(0.35, 0.65), size)
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.008, 0.02)
    return moving_specs(start, frames, (speed * np.cos(angle), speed * np.sin(angle)))


def true_flows(specs: list[ShapeSpec], side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each frame after the first: (current -> previous flow, non-occluded mask) of the translated scene."""
    pairs = []
    for prev, cur in zip(specs, specs[1:]):
        now = render_mask(counterpart(cur, "square"), side)
        before = render_mask(counterpart(prev, "square"), side)
        flow = np.zeros((side, side, 2), np.float32)
        flow[now] = ((prev.cx - cur.cx) * side, (prev.cy - cur.cy) * side)
        inside = ndimage.binary_erosion(now, iterations=1)
        outside = ~ndimage.binary_dilation(now | before, iterations=1)
        pairs.append((flow, inside | outside))
    return pairs


def quality(frames: list[np.ndarray], specs: list[ShapeSpec], side: int) -> dict[str, float]:
    readings = [read_shape(Image.fromarray(f)) for f in frames]
    truth = [counterpart(s, "square") for s in specs]
    return {"shape_accuracy": float(np.mean([r.shape == "square" for r in readings])),
            "colour_accuracy": float(np.mean([r.colour == t.colour for r, t in zip(readings, truth)])),
            "iou": float(np.mean([iou(r.mask, render_mask(t, side)) for r, t in zip(readings, truth)]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a builtin:shapes run folder (or generator file)")
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--side", type=int, default=128, help="clip frame side in px")
    ap.add_argument("--size", type=int, default=32, help="translate at this side (the run's training size)")
    ap.add_argument("--weights", default="0.5", help="temporal weights to try, comma-separated")
    args = ap.parse_args()

    gen, gen_cfg = load_generator(resolve_generator_file(args.run, "AtoB", False))
    tmp = Path(tempfile.mkdtemp(prefix="i2i-flicker-"))
    settings = {"off": None, **{f"temporal {w}": TemporalConfig(weight=float(w)) for w in args.weights.split(",")}}
    rows: dict[str, dict[str, list[float]]] = {name: {} for name in settings}
    for c in range(args.clips):
        specs = clip_specs(c, args.frames)
        src = write_video(tmp / f"clip{c}.mp4", (np.asarray(render(s, args.side)) for s in specs), 24)
        inputs = [f.array for f in read_frames(src)]
        measured_flows, known_flows = input_flows(inputs), true_flows(specs, args.side)
        for name, temporal in settings.items():
            t0 = time.perf_counter()
            job = translate_video(src, tmp / f"clip{c}_{name}.mp4", gen, gen_cfg, TranslateConfig(size=args.size),
                                  VideoOptions(temporal=temporal))
            seconds = time.perf_counter() - t0
            outputs = [f.array for f in read_frames(job.output)]
            scores = {"warping_error_true_flow": clip_warping_error(outputs, known_flows),
                      "warping_error_farneback": clip_warping_error(outputs, measured_flows),
                      **quality(outputs, specs, args.side), "fps": job.frames / seconds}
            for key, value in scores.items():
                rows[name].setdefault(key, []).append(value)
    summary = {name: {k: round(float(np.mean(v)), 5) for k, v in cols.items()} for name, cols in rows.items()}
    keys = list(next(iter(summary.values())))
    print(f"{'':<14}" + "".join(f"{k:>26}" for k in keys))
    for name, cols in summary.items():
        print(f"{name:<14}" + "".join(f"{cols[k]:>26.4f}" for k in keys))
    print(json.dumps({"benchmark": "video_flicker", "settings": vars(args), "results": summary,
                      "per_clip": {n: {k: [round(x, 5) for x in v] for k, v in cols.items()}
                                   for n, cols in rows.items()}}))


if __name__ == "__main__":
    main()
