"""Benchmark: flicker of Ctrl-X or FreeControl on a video with ONE seed for every frame (what ``i2i ctrlx
--structure clip.mp4`` / ``i2i freecontrol --condition clip.mp4`` do) against a new seed per frame (seed + frame
index), on the same clip, model and settings.

The clip is ``examples/make_clip.py``'s moving circle (a filled circle on white: a structure no model was trained
on, in motion; ``--still``: the circle does not move, so an output that changes is flicker alone). Flicker is the
warping error of Lai et al. 2018 (``i2i.video.flicker``) with Farneback flow estimated on the INPUT frames; the
input clip's own warping error is printed as the floor that motion and flow errors alone give. The model is the
bundled demo model (or ``$I2I_CTRLX_MODEL`` / ``$I2I_FREECONTROL_MODEL``) with its recommended settings; ``--steps``
and ``--inversion-steps`` override them. FreeControl's inversion prompt is the prompt (the CLI's default), its
inversions and bases are cached in i2i's cache folder as by the CLI, so the first run's seconds include inverting
every frame (and the bases, when not cached) and the second run reuses them. Usage:

    python examples/benchmarks/diffusion_video_flicker.py --frames 12 --steps 10
    python examples/benchmarks/diffusion_video_flicker.py --method freecontrol --frames 8

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
from i2i.freecontrol.config import FREECONTROL  # noqa: E402
from i2i.video.diffusion import ctrlx_frames, freecontrol_frames, generate_video  # noqa: E402
from i2i.video.flicker import clip_warping_error, input_flows  # noqa: E402
from i2i.video.reading import read_frames  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1]
METHODS = {"ctrlx": (CTRLX, ctrlx_frames), "freecontrol": (FREECONTROL, freecontrol_frames)}


def frames_of(path: Path) -> list:
    return [f.array for f in read_frames(path)]


def settings(method, model: str, args: argparse.Namespace):
    """The model's recommended config with ``--steps`` / ``--inversion-steps`` applied."""
    changes = {} if args.steps is None else {"num_inference_steps": args.steps}
    if args.inversion_steps is not None:
        if method is not FREECONTROL:
            raise SystemExit("--inversion-steps is FreeControl's (--method freecontrol)")
        changes["inversion_steps"] = args.inversion_steps
    return dataclasses.replace(method.model_config(model), **changes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=sorted(METHODS), default="ctrlx")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=64, help="clip side in px")
    ap.add_argument("--still", action="store_true", help="a clip whose circle does not move")
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's recommended)")
    ap.add_argument("--inversion-steps", type=int, default=None,
                    help="FreeControl's inversion steps of each frame (default: the model's recommended)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompt", default="a blue circle")
    ap.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)), help="torch threads")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    method, make_fn = METHODS[args.method]
    model = method.default_model(None)
    config = settings(method, model, args)
    pipe = method.pipeline_class().from_pretrained(model, device="cpu")
    tmp = Path(tempfile.mkdtemp())
    clip = tmp / "circles.mp4"
    subprocess.run([sys.executable, str(EXAMPLES / "make_clip.py"), str(clip), "--frames", str(args.frames),
                    "--size", str(args.size), *(["--still"] if args.still else [])], check=True)
    seeds = iter(range(args.seed, args.seed + args.frames))
    runs = {"shared seed": make_fn(pipe, args.prompt, args.seed, config=config),
            "seed per frame": lambda img: make_fn(pipe, args.prompt, next(seeds), config=config)(img)}
    inputs = frames_of(clip)
    flows = input_flows(inputs)
    result = {"method": args.method, "frames": len(inputs), "size": args.size, "still": args.still,
              "steps": config.num_inference_steps, "model": Path(model).name, "threads": args.threads,
              "input": clip_warping_error(inputs, flows)}
    if method is FREECONTROL:
        result["inversion_steps"] = config.inversion_steps
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
