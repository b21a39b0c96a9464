"""Measure: does it matter at which resolution a Canny condition map is made? FreeControl on the bundled demo model
(64 px), conditions that are filled shapes drawn at 256 px, in four ways:

- ``filled``: the filled shape itself (no map);
- ``canny at 256``: the Canny map made at the image's own size, as the official app does, then resized by the
  pipeline to 64 px (its 1-pixel lines become faint);
- ``canny at 64``: the Canny map made at the model's working size, what ``--preprocess`` does;
- ``unguided``: the unguided sibling of the ``canny at 64`` run (same noise, no guidance).

Score: IoU of the generated shape (``i2i.shapes.read_object``) with the filled shape at 64 px, over shapes and seeds.
Usage: ``python examples/benchmarks/preprocess_map_size.py --seeds 3``. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from i2i.demo.model import demo_model_path  # noqa: E402
from i2i.freecontrol.pipeline import FreeControlPipeline  # noqa: E402
from i2i.preprocess import condition_map  # noqa: E402
from i2i.shapes import SHAPES, ShapeSpec, iou, read_object, render, render_mask  # noqa: E402

# Shapes off-centre, where an unguided sample rarely puts them.
SPECS = {"square": ShapeSpec("square", "blue", 0.66, 0.34, 0.20),
         "circle": ShapeSpec("circle", "green", 0.34, 0.66, 0.20),
         "triangle": ShapeSpec("triangle", "yellow", 0.64, 0.64, 0.24)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--source-size", type=int, default=256)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed-images", type=int, default=None, help="analysis images (default: the model's)")
    parser.add_argument("--bases-steps", type=int, default=None, help="analysis steps (default: the model's)")
    parser.add_argument("--inversion-steps", type=int, default=None, help="default: the model's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = FreeControlPipeline.from_pretrained(str(demo_model_path()), device="cpu")
    size = pipe.default_size
    config = pipe.default_config()
    bases = {k: v for k, v in (("num_images", args.seed_images), ("num_inference_steps", args.bases_steps)) if v}
    config = dataclasses.replace(config, num_inference_steps=args.steps, bases=dataclasses.replace(config.bases,
                                                                                                    **bases),
                                 inversion_steps=args.inversion_steps or config.inversion_steps)
    scores: dict[str, list[float]] = {"filled": [], f"canny at {args.source_size}": [], f"canny at {size}": [],
                                      "unguided": []}
    start = time.perf_counter()
    for shape in args.shapes.split(","):
        spec = SPECS[shape]
        image = render(spec, args.source_size)
        target = render_mask(spec, size)
        conditions = {"filled": image, f"canny at {args.source_size}": condition_map(image, "canny"),
                      f"canny at {size}": condition_map(image, "canny", size)}
        for seed in range(args.seeds):
            for name, condition in conditions.items():
                out = pipe(f"a red {shape}", condition, config, inversion_prompt=f"an outline of a {shape}",
                           concept=shape, seed=seed, unguided=name == f"canny at {size}")
                scores[name].append(iou(read_object(out.images[0]).mask, target))
                if out.unguided:
                    scores["unguided"].append(iou(read_object(out.unguided[0]).mask, target))
    means = {k: round(statistics.mean(v), 3) for k, v in scores.items()}
    for name, value in means.items():
        print(f"{name:16s} IoU {value:.3f}  ({len(scores[name])} images)")
    print(json.dumps({"benchmark": "preprocess_map_size", "model": "demo", "steps": args.steps, "seeds": args.seeds,
                      "shapes": args.shapes.split(","), "iou": means, "per_image": scores,
                      "seconds": round(time.perf_counter() - start, 1), "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
