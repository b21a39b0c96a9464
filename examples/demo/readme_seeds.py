"""The documented diffusion examples on many seeds: what a user gets, read off the pixels.

    python examples/demo/readme_seeds.py --example ctrlx --seeds 30
    python examples/demo/readme_seeds.py --example freecontrol --seeds 20
    python examples/demo/readme_seeds.py --example freecontrol-appearance --seeds 20

Each example is a documented command (the README's two quick starts, docs/freecontrol.md's appearance image) as
the library runs it (the bundled demo model, its recommended settings), on the seed the command uses when none is
given (the method's default) and on seeds 0 to N-1. Every output is read by :func:`i2i.shapes.read_object`: its
colour and shape, and its mask IoU with the sketch's filled shape (:data:`conditions.SKETCHES`). Prints one row
per seed and a summary; the FreeControl quick start's rows also read the unguided sample of the same seed
(``--save-unguided``).
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from i2i.shapes import iou, read_object, render_mask

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conditions import SKETCHES  # noqa: E402  (the shipped example conditions)

CONDITIONS = HERE.parent / "conditions"


@dataclass(frozen=True)
class Example:
    """A documented command: its method, prompt and sketch, the colour and shape it should draw, extra arguments
    of the pipeline call and an appearance image (files in ``examples/conditions/``)."""

    method: str
    prompt: str
    sketch: str
    colour: str
    shape: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    appearance: str | None = None


EXAMPLES = {
    "ctrlx": Example("ctrlx", "a blue square", "square_sketch.png", "blue", "square"),
    "freecontrol": Example("freecontrol", "a blue triangle", "triangle_sketch.png", "blue", "triangle",
                           (("inversion_prompt", "an outline of a triangle"), ("unguided", True))),
    "freecontrol-appearance": Example("freecontrol", "a square", "square_sketch.png", "green", "square",
                                      (("inversion_prompt", "an outline of a square"),), "green_circle.png"),
}


def reading(image, example: Example) -> dict[str, Any]:
    """Colour, shape and IoU with the example's sketch (its filled shape at the image's size)."""
    seen = read_object(image)
    return {"colour": seen.colour, "shape": seen.shape,
            "iou": round(iou(seen.mask, render_mask(SKETCHES[example.sketch], image.size[0])), 2)}


def load(example: Example, cache_dir: str | None):
    """The example's pipeline on the bundled demo model (``cache_dir`` None: the CLI's cache)."""
    from i2i.ctrlx.config import CTRLX
    from i2i.demo.model import demo_model_path
    from i2i.freecontrol.config import FREECONTROL

    method = {"ctrlx": CTRLX, "freecontrol": FREECONTROL}[example.method]
    return method.pipeline_class().from_pretrained(demo_model_path(), device="cpu", cache_dir=cache_dir)


def run_seed(pipe, example: Example, seed: int) -> dict[str, Any]:
    """One seed: the output's reading (and the unguided sample's, as ``unguided_*``)."""
    condition = str(CONDITIONS / example.sketch)
    if example.method == "ctrlx":
        out = pipe(example.prompt, condition, seed=seed, decode_branches=False)
        return {"seed": seed, **reading(out.images[0], example)}
    look = str(CONDITIONS / example.appearance) if example.appearance else None
    kwargs = dict(example.kwargs)
    out = pipe(example.prompt, condition, seed=seed, appearance=look, **kwargs)
    if not kwargs.get("unguided"):
        return {"seed": seed, **reading(out.images[0], example)}
    unguided = {f"unguided_{k}": v for k, v in reading(out.unguided[0], example).items()}
    return {"seed": seed, **reading(out.images[0], example), **unguided}


def summary(rows: list[dict[str, Any]], example: Example, prefix: str = "") -> str:
    ious = [r[f"{prefix}iou"] for r in rows]
    colour = sum(r[f"{prefix}colour"] == example.colour for r in rows)
    shape = sum(r[f"{prefix}shape"] == example.shape for r in rows)
    placed = sum(i >= 0.7 for i in ious)
    right = sum(r[f"{prefix}colour"] == example.colour and r[f"{prefix}shape"] == example.shape
                and r[f"{prefix}iou"] >= 0.7 for r in rows)
    return (f"{len(rows)} seeds: {example.colour} in {colour}, read as a {example.shape} in {shape}, mask IoU with the "
            f"sketch >= 0.7 in {placed} (median {statistics.median(ious):.2f}, {min(ious):.2f}-{max(ious):.2f}); "
            f"all three in {right}")


def main(example: str = typer.Option("ctrlx", help="ctrlx, freecontrol or freecontrol-appearance."),
         seeds: int = typer.Option(30, help="Seeds 0 to N-1, after the method's default seed."),
         threads: int = typer.Option(1, help="torch CPU threads (0: torch's default)."),
         cache_dir: str = typer.Option("", help="FreeControl's cache (default: the CLI's).")) -> None:
    """Run one documented example on the default seed and seeds 0 to N-1 and print what each output shows."""
    import torch

    from i2i.cli.common import quiet_libraries

    if example not in EXAMPLES or seeds < 0:
        print(f"error: --example is one of {', '.join(EXAMPLES)}; --seeds must not be negative", file=sys.stderr)
        raise SystemExit(2)
    quiet_libraries()
    if threads:
        torch.set_num_threads(threads)
    chosen = EXAMPLES[example]
    pipe = load(chosen, cache_dir or None)
    rows = [run_seed(pipe, chosen, seed) for seed in [pipe.method.seed, *range(seeds)]]
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    print(f"\n{chosen.prompt!r} on {chosen.sketch}, {torch.get_num_threads()} thread(s): {summary(rows, chosen)}")
    if "unguided_iou" in rows[0]:
        print(f"unguided: {summary(rows, chosen, 'unguided_')}")


if __name__ == "__main__":
    typer.run(main)
