"""The ``i2i`` command: a thin Typer layer over the library. Heavy imports happen inside commands only."""

from __future__ import annotations

import typer

from i2i import __version__
from i2i.cli.common import Group
from i2i.cli.ctrlx import app as ctrlx_app
from i2i.cli.cyclegan import app as cyclegan_app
from i2i.cli.diffusion import diffusion_app
from i2i.cli.freecontrol import app as freecontrol_app
from i2i.generate.config import GENERATE
from i2i.plugins import add_diffusion_plugins
from i2i.cli.preprocess import preprocess as preprocess_command
from i2i.cli.score import score as score_command
from i2i.cli.summaries import merge_summaries as merge_summaries_command
from i2i.cyclegan.methods import REGISTRY

app = typer.Typer(
    name="i2i",
    help="Image-to-image translation from one CLI.\n\n"
         "cyclegan: train on two unpaired image folders (or the built-in circles -> squares set) with one of "
         f"the training methods (--model: {', '.join(REGISTRY)}), then translate images and videos and evaluate "
         "the run (FID/KID with --metrics).\n\n"
         "freecontrol: training-free structure control of a Stable Diffusion model (or the bundled offline demo "
         "model): a text prompt generates an image laid out like a condition image (sketch, edges, depth, photo), "
         "or a video frame by frame.\n\n"
         "ctrlx: Ctrl-X, structure and appearance control with no inversion or guidance (images or videos).\n\n"
         "generate: plain text-to-image sampling (the baseline of both).\n\n"
         "preprocess: condition maps (canny, edges, scribble, invert) of images, with no model download.\n\n"
         "score: structure distance and CLIP score of generated images (needs DINO/CLIP weights).\n\n"
         "merge-summaries: one summary for a batch sharded over several processes (docs/batch.md).\n\n"
         "Every command takes --quiet, --json and --debug. The commands that compute on a device (cyclegan train, "
         "translate and eval; freecontrol, freecontrol bases, ctrlx and generate) also take --device and "
         "--precision, score "
         "takes --device; cyclegan import and export work on the CPU. Nothing prompts; exit 0 means every input "
         "succeeded (docs/cli.md lists the exit codes).",
    cls=Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(cyclegan_app, name="cyclegan", cls=Group)
app.add_typer(freecontrol_app, name="freecontrol")      # diffusion methods: their own command classes
app.add_typer(ctrlx_app, name="ctrlx")
app.add_typer(diffusion_app(GENERATE), name="generate")
app.command("preprocess")(preprocess_command)
app.command("score")(score_command)
app.command("merge-summaries")(merge_summaries_command)
add_diffusion_plugins(app, {info.name for info in (*app.registered_groups, *app.registered_commands)})


def _version(value: bool) -> None:
    if value:
        typer.echo(f"i2i {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """i2i: image-to-image translation."""


def main() -> None:
    app()
