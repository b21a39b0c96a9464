"""A picture of protocol cases (docs/demo-protocol.md) from the images a protocol run saved:

    python examples/demo/protocol.py --split heldout --images out/heldout --out out/heldout.json
    python examples/demo/figure.py --images out/heldout --split heldout --out docs/demo_protocol.png

One row per case, the first ``--structure`` structure cases then the first ``--appearance`` appearance cases of the
split. Columns: the sketch, the appearance image (blank for a structure case), FreeControl's output, the unguided
sample (blank for an appearance case), Ctrl-X's output. A missing image (a method not run) is left blank.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from PIL import Image

from i2i.demo.protocol import IMAGE_SIZE, SPLITS, cases
from i2i.errors import I2IError, InputError, OutputError, UsageError

COLUMNS = ("sketch", "appearance", "freecontrol", "unguided", "ctrlx")
GAP = 4


def tiles(case, folder: Path) -> list[Image.Image | None]:
    """The row of ``case``: its inputs rendered, its outputs read from ``folder`` (None where absent)."""
    def saved(suffix: str) -> Image.Image | None:
        path = folder / f"{case.name}-{suffix}.png"
        return Image.open(path).convert("RGB") if path.is_file() else None

    return [case.sketch_image(IMAGE_SIZE), case.appearance_image(IMAGE_SIZE), saved("freecontrol"),
            saved("unguided"), saved("ctrlx")]


def grid(rows: list[list[Image.Image | None]], scale: int = 2) -> Image.Image:
    """The rows as one picture, each tile ``scale`` times the native size (nearest), on a light grey ground."""
    side = IMAGE_SIZE * scale
    out = Image.new("RGB", (len(COLUMNS) * (side + GAP) - GAP, len(rows) * (side + GAP) - GAP), (225, 225, 225))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            if tile is not None:
                out.paste(tile.resize((side, side), Image.Resampling.NEAREST), (c * (side + GAP), r * (side + GAP)))
    return out


def main(images: str = typer.Option(..., help="The folder a protocol run saved its images in (--images)."),
         split: str = typer.Option("heldout", help="The split that run measured."),
         out: str = typer.Option(..., help="The PNG to write (refused if it exists, unless --overwrite)."),
         structure: int = typer.Option(3, help="Structure cases to show."),
         appearance: int = typer.Option(3, help="Appearance cases to show."),
         overwrite: bool = False) -> None:
    """Write a picture of the first cases of SPLIT from a protocol run's IMAGES folder."""
    try:
        chosen, rows = _rows(Path(images), split, structure, appearance)
        target = Path(out)
        if target.exists() and not overwrite:
            raise OutputError(f"{target} already exists; pass --overwrite to replace it")
    except I2IError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    grid(rows).save(target)
    print(f"wrote {target} ({len(rows)} cases: {', '.join(c.name for c in chosen)})")


def _rows(folder: Path, split: str, structure: int, appearance: int):
    if split not in SPLITS:
        raise UsageError(f"--split {split!r}: choose from {', '.join(SPLITS)}")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    chosen = cases(split, ("structure",))[:structure] + cases(split, ("appearance",))[:appearance]
    rows = [tiles(case, folder) for case in chosen]
    if not any(t is not None for row in rows for t in row[2:]):
        raise InputError(f"{folder} holds no outputs of the {split} split")
    return chosen, rows


if __name__ == "__main__":
    typer.run(main)
