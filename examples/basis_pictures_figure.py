"""Make examples/basis_pictures.png: the demo model's basis pictures (``i2i freecontrol bases --show``) of the
square sketch with the "square" bases and of the circle sketch with the "circle" bases, every fifth analysed
timestep, one row per sketch, the sketch first. Usage: ``python examples/basis_pictures_figure.py [OUT.png]``."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from i2i.demo.model import demo_model_path
from i2i.freecontrol.basis_pictures import basis_pictures, picture_grid
from i2i.freecontrol.pipeline import FreeControlPipeline

HERE = Path(__file__).resolve().parent
ROWS = (("square_sketch.png", "square"), ("circle_sketch.png", "circle"))
EVERY = 5


def main(out: Path) -> None:
    pipe = FreeControlPipeline.from_pretrained(str(demo_model_path()), device="cpu")
    tiles = []
    for name, concept in ROWS:
        condition = Image.open(HERE / "conditions" / name).convert("RGB")
        shown = basis_pictures(pipe, condition, concept, inversion_prompt=f"an outline of a {concept}")
        row = shown.pictures[::EVERY]
        tiles += [condition.resize(row[0].size, Image.Resampling.LANCZOS), *row]
    columns = len(tiles) // len(ROWS)
    sheet = picture_grid(tiles, columns, gap=2)
    sheet.resize((sheet.width * 2, sheet.height * 2), Image.Resampling.NEAREST).save(out)
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "basis_pictures.png")
