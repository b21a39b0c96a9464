"""Help screens tell the truth: both methods at the top, flags without a value column, common flags as claimed."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from i2i.cli.app import app

COMMANDS = [[], ["cyclegan"], ["cyclegan", "train"], ["cyclegan", "translate"], ["cyclegan", "eval"],
            ["cyclegan", "import"], ["cyclegan", "export"], ["freecontrol"], ["freecontrol", "bases"]]
DEVICE_COMMANDS = [["cyclegan", "train"], ["cyclegan", "translate"], ["cyclegan", "eval"], ["freecontrol"],
                   ["freecontrol", "bases"]]


def help_text(*words: str) -> str:
    res = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    return res.stdout


def test_top_level_help_describes_both_methods():
    text = help_text()
    assert "CycleGAN" in text or "cyclegan:" in text
    assert "freecontrol:" in text and "Stable Diffusion" in text


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "i2i")
def test_flags_show_no_value_metavar(words):
    text = help_text(*words)
    assert "<bool>" not in text
    for flag in ("--help", "--quiet", "--json", "--overwrite", "--resume", "--save-unguided"):
        line = next((ln for ln in text.splitlines() if re.search(rf"{flag}\b", ln)), None)
        if line is not None:
            assert not re.search(rf"{flag}\s+(-\w\s+)?<", line), line


@pytest.mark.parametrize("words", COMMANDS[2:], ids=lambda w: " ".join(w))
def test_common_flags_are_where_the_top_level_help_says(words):
    """Every command takes --quiet/--json/--debug; --device and --precision exactly the ones that compute."""
    text = help_text(*words)
    for flag in ("--quiet", "--json", "--debug"):
        assert flag in text
    takes_device = words in DEVICE_COMMANDS
    assert ("--device" in text) is takes_device and ("--precision" in text) is takes_device
    top = help_text()
    assert "import and export work on the CPU" in " ".join(top.split())


def test_device_flag_on_import_is_a_usage_error_not_a_surprise():
    res = CliRunner().invoke(app, ["cyclegan", "import", "x.pth", "--device", "cpu"])
    assert res.exit_code == 2


def test_required_options_are_marked():
    text = help_text("cyclegan", "translate")
    line = next(ln for ln in text.splitlines() if "--checkpoint" in ln)
    assert "*" in line and "[required]" in text


@pytest.mark.parametrize("words, usage", [(["ctrlx"], "[OPTIONS]"), (["generate"], "[OPTIONS]"),
                                          (["freecontrol"], "[OPTIONS] COMMAND [ARGS]..."),
                                          (["cyclegan"], "[OPTIONS] COMMAND [ARGS]...")])
def test_usage_names_subcommands_only_where_there_are_some(words, usage):
    line = next(line for line in help_text(*words).splitlines() if "Usage:" in line)
    assert line.strip() == f"Usage: i2i {' '.join(words)} {usage}"


def test_train_model_help_lists_the_registered_methods():
    from i2i.cyclegan.methods import REGISTRY

    text = help_text("cyclegan", "train")
    assert "one of: " + ", ".join(REGISTRY) in re.sub(r"[\s│]+", " ", text)


def test_import_official_help_says_where_the_step_count_comes_from():
    text = " ".join(help_text("freecontrol", "bases").replace("│", " ").split())      # the panel's lines joined
    assert "200-step" not in text and "step count is read from its folder or file name" in text
