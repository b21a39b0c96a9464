"""Write the example circles in examples/circles/: one circle per colour, at random places and sizes (from their
own random stream, not builtin:shapes' training or test images), 32 px like the shapes preset's images.
Regenerate with ``python examples/make_circles.py``; ``--size 128 --out DIR`` draws the same circles larger."""

import argparse
import random
from pathlib import Path

from i2i.shapes import COLOURS, random_spec, render

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("out", nargs="?", type=Path, default=Path(__file__).parent / "circles", help="output folder")
ap.add_argument("--out", dest="out_flag", type=Path, default=None, help="output folder (same as the argument)")
ap.add_argument("--size", type=int, default=32, help="image side in px")
args = ap.parse_args()
out = args.out_flag or args.out
out.mkdir(parents=True, exist_ok=True)
rng = random.Random("i2i-example-circles")
for colour in sorted(COLOURS):
    spec = random_spec(rng, shape="circle", colour=colour)
    render(spec, args.size).save(out / f"{colour}_circle.png")
    print(out / f"{colour}_circle.png")
