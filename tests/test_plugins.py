"""Methods from other packages, by entry point (i2i/plugins.py): a training method reaches `--model`, a diffusion
method becomes a command with its flags; a broken or clashing plugin is skipped with a warning."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from i2i import plugins

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FakeEntryPoint:
    name: str
    value: str
    loaded: object = None

    def load(self):
        if isinstance(self.loaded, Exception):
            raise self.loaded
        return self.loaded


def test_a_training_method_plugin_reaches_the_train_command(monkeypatch):
    from i2i.cli.app import app
    from i2i.cyclegan import methods

    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.setattr(methods, "REGISTRY", dict(methods.REGISTRY))
    monkeypatch.setattr(plugins, "_entry_points", lambda group: [FakeEntryPoint("onesided", "toy_method:OneSided"),
                                                                  FakeEntryPoint("Bad-Name", "x:Y")])
    with pytest.warns(UserWarning, match="Bad-Name .* skipped"):
        plugins.register_training_plugins()
    assert methods.REGISTRY["onesided"] == "toy_method:OneSided"
    text = CliRunner().invoke(app, ["cyclegan", "train", "--model", "onesided", "--help"],
                              env={"COLUMNS": "200"}).output
    assert "--lambda-idt" in text and "one of: cyclegan, cut, fastcut" in text


def test_a_diffusion_method_plugin_becomes_a_command(monkeypatch):
    from test_diffusion_method_contract import INIT

    from i2i.generate.config import GENERATE

    app = typer.Typer()
    monkeypatch.setattr(plugins, "_entry_points", lambda group: [
        FakeEntryPoint("initgen", "pkg:INIT", INIT),
        FakeEntryPoint("again", "pkg:GENERATE", GENERATE),                 # a name already taken
        FakeEntryPoint("broken", "pkg:missing", ImportError("no module named pkg")),
        FakeEntryPoint("other", "pkg:thing", object())])
    with pytest.warns(UserWarning) as caught:
        plugins.add_diffusion_plugins(app, {"generate"})
    messages = [str(w.message) for w in caught]
    assert any("already a command" in m for m in messages) and any("no module named pkg" in m for m in messages)
    assert any("not a DiffusionMethod" in m for m in messages)
    text = CliRunner().invoke(app, ["initgen", "--help"], env={"COLUMNS": "200"}).output
    assert "--init" in text and "Start image; repeatable." in text
