"""Ship the demo model's semantic bases: ``python -m i2i.demo.bases [--model DIR]``.

FreeControl's analysis stage (20 seed images of a concept, 50 steps, PCA of the self-attention keys) costs about
37 s a concept for the demo model on one CPU thread, the larger part of a first run. The bases are a function of
the weights and the settings, so the model folder carries them (``i2i_bases/``, read only; see
:func:`i2i.freecontrol.bases.ship_bases`) for the concepts its prompts name, at its recommended settings and
native size; other settings, sizes or concepts are computed and cached as for any model. Computed on one thread, so
the files are the same on every run of this command on one machine.
"""

from __future__ import annotations

from pathlib import Path

import typer

from i2i.demo.model import demo_model_path
from i2i.shapes import SHAPES

app = typer.Typer(add_completion=False)


def ship_demo_bases(model: Path, concepts: tuple[str, ...] = SHAPES) -> list[Path]:
    """Compute and store the bases of ``concepts`` in ``model`` (a demo model folder), at its recommended
    FreeControl settings and native size, on one CPU thread; returns the files written."""
    import torch

    from i2i.freecontrol.bases import ship_bases
    from i2i.freecontrol.pipeline import FreeControlPipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipe = FreeControlPipeline.from_pretrained(model, device="cpu")
        bases = pipe.default_config().bases
        size = pipe.check_size(bases.size or pipe.default_size)        # what a run at the native size uses
        return [ship_bases(pipe, concept, bases, size) for concept in concepts]
    finally:
        torch.set_num_threads(threads)


@app.command()
def main(model: Path = typer.Option(demo_model_path(), help="The demo model folder to add the bases to.")) -> None:
    """Compute the bases of circle, square and triangle and store them in the model folder (i2i_bases/)."""
    from i2i.cli.common import quiet_libraries

    quiet_libraries()
    for path in ship_demo_bases(model):
        typer.echo(f"bases: {path}")


if __name__ == "__main__":
    app()
