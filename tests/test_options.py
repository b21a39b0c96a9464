"""Options declared once (i2i.options) and the Typer flags built from them (i2i.cli.options)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Optional

import pytest
import typer
from typer.testing import CliRunner

from i2i.cli.options import Defaults, Source, declared_command, given_changes, peek_option
from i2i.options import declared, flag, nest, option, value_at


@dataclass(frozen=True)
class Gen:
    arch: str = option("resnet", help="Generator.", flag="--net-g", aliases=("--netG",), choices=("resnet", "unet"),
                       panel="Architecture")
    norm: str = option("instance", help="Normalisation.", panel="Architecture")
    dropout: bool = option(False, help="Dropout.", panel="Architecture")


@dataclass(frozen=True)
class Disc:
    norm: str = option("instance", help="Normalisation.", panel="Architecture")


@dataclass(frozen=True)
class Config:
    lr: float = option(2e-4, help="Learning rate.")
    max_iters: int | None = option(None, help="Stop after this many iterations.")
    flip: bool = option(True, help="Random flips.")
    seed: int = 0                                      # not declared: no flag
    generator: Gen = Gen()
    discriminator: Disc = Disc()


@dataclass(frozen=True)
class Extra:
    weight: float = option(10.0, help="A model's own weight.", flag="--extra-weight")


def _sources(args):
    extra = [Source(Extra, ("options",), panel="Model")] if peek_option(args, "--model") == "x" else []
    return [Source(Config), *extra]


def _defaults(args):
    return Defaults(values={**dataclasses.asdict(Config(lr=5e-4, generator=Gen(norm="batch"))),
                            "options": {"weight": 3.0}}, usual=Config())


app = typer.Typer(add_completion=False)


@app.command(cls=declared_command(_sources, _defaults))
def run(ctx: typer.Context, model: Annotated[Optional[str], typer.Option("--model")] = None) -> None:
    print("CHANGES", given_changes(ctx))


@app.command()
def other() -> None:
    """A second command, so that ``run`` is a subcommand."""


def invoke(*args: str):
    return CliRunner().invoke(app, ["run", *args], env={"COLUMNS": "200"})


def test_declarations_give_flag_names_and_paths():
    assert flag(Config, "max_iters") == "--max-iters" and flag(Gen, "arch") == "--net-g"
    assert flag(Config, "seed") == "--seed"                            # undeclared: its name
    with pytest.raises(KeyError):
        flag(Config, "nothing")
    assert [d.path for d in declared(Config)] == [("lr",), ("max_iters",), ("flip",), ("generator", "arch"),
                                                  ("generator", "norm"), ("generator", "dropout"),
                                                  ("discriminator", "norm")]
    assert nest({("generator", "arch"): "unet", ("lr",): 1.0}) == {"generator": {"arch": "unet"}, "lr": 1.0}
    assert value_at({"a": Gen()}, ("a", "norm")) == "instance"
    assert peek_option(["--model=x", "y"], "--model") == "x" and peek_option(["--", "--model", "x"], "--model") is None


def test_given_flags_become_nested_changes_and_shared_flags_set_both_paths():
    res = invoke("--netG", "unet", "--norm", "batch", "--no-flip", "--dropout", "--lr", "0.1")
    assert res.exit_code == 0, res.output
    assert "CHANGES {'lr': 0.1, 'flip': False, 'generator': {'arch': 'unet', 'norm': 'batch', 'dropout': True}, " \
           "'discriminator': {'norm': 'batch'}}" in res.output
    res = invoke()
    assert "CHANGES {}" in res.output                                  # nothing given: no changes


def test_model_flags_exist_only_for_that_model():
    assert invoke("--extra-weight", "2").exit_code == 2
    res = invoke("--model", "x", "--extra-weight", "2")
    assert res.exit_code == 0 and "'options': {'weight': 2.0}" in res.output


def test_help_shows_the_defaults_that_run():
    text = invoke("--model", "x", "--help").output
    lines = {ln.split()[1]: ln for ln in text.splitlines() if ln.startswith("│ --")}
    assert "[default: 0.0005 from the preset; 0.0002 otherwise]" in lines["--lr"]
    assert "[default: generator: batch, discriminator: instance from the preset; instance otherwise]" in lines[
        "--norm"]
    assert "[resnet|unet]" in lines["--net-g,--netG"] and "[default: resnet]" in lines["--net-g,--netG"]
    assert "[default: --flip]" in lines["--flip"] and "default" not in lines["--max-iters"]
    assert "[default: 3.0 from the preset; none otherwise]" in lines["--extra-weight"]
    assert "Architecture" in text and "Model" in text
