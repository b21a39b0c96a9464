"""The ``i2i`` command: a thin Typer layer over the library. Heavy imports happen inside commands only."""

from __future__ import annotations

import typer

from i2i import __version__
from i2i.cli.ctrlx import app as ctrlx_app
from i2i.cli.cyclegan import app as cyclegan_app
from i2i.cli.freecontrol import app as freecontrol_app
from i2i.cli.score import score as score_command

app = typer.Typer(
    name="i2i",
    help="Image-to-image translation: CycleGAN training and translation, from one CLI.\n\n"
         "Every command takes --device, --precision, --quiet, --json and --debug, never prompts, and exits 0 "
         "only when every input succeeded (see the README for exit codes).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(cyclegan_app, name="cyclegan")
app.add_typer(freecontrol_app, name="freecontrol")
app.add_typer(ctrlx_app, name="ctrlx")
app.command("score")(score_command)


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
