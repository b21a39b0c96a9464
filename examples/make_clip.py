"""Write a short test clip: a circle moving across a white frame (builtin:shapes' domain A, in motion), with a
440 Hz tone as its audio track, H.264 + AAC in MP4. A clip no model was trained on, to try video translation:

    python examples/make_clip.py circles.mp4 --frames 48 --fps 24 --size 128
    i2i cyclegan translate circles.mp4 -c runs/shapes --size 32 --out squares.mp4
"""

import argparse
import math
from pathlib import Path

import numpy as np

from i2i.shapes import ShapeSpec, moving_specs, render
from i2i.video.writing import write_video

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("out", type=Path, help="output video, e.g. circles.mp4")
ap.add_argument("--frames", type=int, default=48)
ap.add_argument("--fps", type=float, default=24.0)
ap.add_argument("--size", type=int, default=128, help="frame side in px")
ap.add_argument("--colour", default="blue")
ap.add_argument("--still", action="store_true", help="no motion: the circle stays where it starts")
ap.add_argument("--overwrite", action="store_true")
args = ap.parse_args()

specs = moving_specs(ShapeSpec("circle", args.colour, 0.35, 0.4, 0.22), args.frames,
                     (0.0, 0.0) if args.still else (0.013, 0.008))
frames = (np.asarray(render(spec, args.size)) for spec in specs)
rate = 22050
t = np.arange(math.ceil(args.frames / args.fps * rate)) / rate
tone = (0.2 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
write_video(args.out, frames, args.fps, audio=(tone, rate), overwrite=args.overwrite)
print(f"wrote {args.out}: {args.frames} frames of {args.size} px at {args.fps:g} fps, 440 Hz tone")
