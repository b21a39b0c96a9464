"""Write the example circles in examples/circles/: one 32 px circle per colour, at random places and sizes
(from their own random stream, not builtin:shapes' training or test images). Regenerate with
``python examples/make_circles.py``."""

import random
import sys
from pathlib import Path

from i2i.shapes import COLOURS, random_spec, render

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "circles"
out.mkdir(parents=True, exist_ok=True)
rng = random.Random("i2i-example-circles")
for colour in sorted(COLOURS):
    spec = random_spec(rng, shape="circle", colour=colour)
    render(spec, 32).save(out / f"{colour}_circle.png")
    print(out / f"{colour}_circle.png")
