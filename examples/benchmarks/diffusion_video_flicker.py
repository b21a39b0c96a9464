"""Benchmark: flicker of Ctrl-X on a video with ONE seed for every frame (what ``i2i ctrlx --structure clip.mp4``
does) against a new seed per frame (seed + frame index), on the same clip, model and settings.

The clip is ``examples/make_clip.py``'s moving circle (a structure no model was trained on, in motion). Flicker is
the warping error of Lai et al. 2018 (``i2i.video.flicker``) with Farneback flow estimated on the INPUT frames;
the input clip's own warping error is printed as the floor that motion and flow errors alone give. Usage:

    python examples/benchmarks/diffusion_video_flicker.py --frames 12 --steps 10

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from i2i.ctrlx.config import CTRLX  # noqa: E402
from i2i.video.diffusion import ctrlx_frames, generate_video  # noqa: E402
from i2i.video.flicker import clip_warping_error, input_flows  # noqa: E402
from i2i.video.reading import read_frames  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1]


def frames_of(path: Path) -> list:
    return [f.array for f in read_frames(path)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=64, help="clip side in px")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompt", default="a blue circle")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model = CTRLX.default_model(None)
    config = dataclasses.replace(CTRLX.model_config(model), num_inference_steps=args.steps)
    pipe = CTRLX.pipeline_class().from_pretrained(model, device="cpu")
    tmp = Path(tempfile.mkdtemp())
    clip = tmp / "circles.mp4"
    subprocess.run([sys.executable, str(EXAMPLES / "make_clip.py"), str(clip), "--frames", str(args.frames),
                    "--size", str(args.size)], check=True)
    seeds = iter(range(args.seed, args.seed + args.frames))
    runs = {"shared seed": ctrlx_frames(pipe, args.prompt, args.seed, config=config),
            "seed per frame": lambda img: pipe(args.prompt, structure=img, seed=next(seeds), config=config,
                                               decode_branches=False).images[0]}
    inputs = frames_of(clip)
    flows = input_flows(inputs)
    result = {"frames": len(inputs), "size": args.size, "steps": args.steps, "model": Path(model).name,
              "input": clip_warping_error(inputs, flows)}
    for name, fn in runs.items():
        start = time.perf_counter()
        job = generate_video(clip, tmp / f"{name.replace(' ', '_')}.mp4", fn)
        outputs = frames_of(job.output)
        if outputs[0].shape != inputs[0].shape:
            raise SystemExit(f"output {outputs[0].shape} != input {inputs[0].shape}: give --size the model's size")
        result[name] = clip_warping_error(outputs, flows)
        result[f"{name} seconds"] = round(time.perf_counter() - start, 1)
    print(f"{'clip':<16}warping error (Farneback, input flow)")
    for name in ("input", *runs):
        print(f"{name:<16}{result[name]:.5f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
