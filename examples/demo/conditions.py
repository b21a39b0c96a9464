"""The example conditions shipped in ``examples/conditions/``: outline sketches and filled shapes placed unlike
a typical sample (off-centre, a fixed size), so that following them is visible.

Regenerate with ``python examples/demo/conditions.py examples/conditions``.
"""

from __future__ import annotations

from pathlib import Path

from i2i.shapes import ShapeSpec, render

EXAMPLE_SIZE = 256
SKETCHES: dict[str, ShapeSpec] = {
    "square_sketch.png": ShapeSpec("square", "red", 0.30, 0.34, 0.20),
    "circle_sketch.png": ShapeSpec("circle", "red", 0.66, 0.62, 0.22),
    "triangle_sketch.png": ShapeSpec("triangle", "red", 0.36, 0.60, 0.26),
}
FILLED: dict[str, ShapeSpec] = {
    "blue_square.png": ShapeSpec("square", "blue", 0.64, 0.36, 0.21),
    "green_circle.png": ShapeSpec("circle", "green", 0.34, 0.64, 0.20),
}


def write_example_conditions(folder: str | Path, size: int = EXAMPLE_SIZE) -> list[Path]:
    """Write every example condition into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, spec in SKETCHES.items():
        render(spec, size, style="outline").save(folder / name)
        written.append(folder / name)
    for name, spec in FILLED.items():
        render(spec, size).save(folder / name)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    import sys

    for p in write_example_conditions(sys.argv[1] if len(sys.argv) > 1 else "examples/conditions"):
        print(p)
