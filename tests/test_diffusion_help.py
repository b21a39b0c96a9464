"""The diffusion commands' --help shows, for every declared setting, the default that will run: the default model's
(the bundled demo model's recommended settings, marked "from the model") or a --model folder's."""

import json
import re

import pytest
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.ctrlx.config import CTRLX
from i2i.freecontrol.config import FREECONTROL
from i2i.generate.config import GENERATE
from i2i.options import declared, value_at

SKIPPED = {"freecontrol": ("bases.inversion_steps", "bases.inversion_prompt")}


def shown_defaults(*words: str) -> dict[str, str]:
    res = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "1000", "I2I_FREECONTROL_MODEL": "",
                                                           "I2I_CTRLX_MODEL": "", "I2I_GENERATE_MODEL": ""})
    assert res.exit_code == 0, res.output
    out = {}
    for line in res.stdout.splitlines():
        found = re.search(r"│ (--[a-z0-9-]+).*\[default: (.*?)\]\s*│", line)
        if found:
            out[found[1]] = found[2]
    return out


def expected(method, config):
    for d in declared(method.config):
        if ".".join(d.path) in SKIPPED.get(method.name, ()):
            continue
        value, usual = value_at(config, d.path), value_at(method.config(), d.path)
        yield d.flag, value, usual


@pytest.mark.parametrize("method", [FREECONTROL, CTRLX, GENERATE], ids=lambda m: m.name)
def test_every_shown_default_is_the_config_that_runs(method):
    shown = shown_defaults(method.name)
    config = method.model_config(method.default_model())       # what runs without flags: the demo model's
    checked = 0
    for flag, value, usual in expected(method, config):
        if value is None or value == usual == "":
            assert flag not in shown
            continue
        text = (flag if value else "--no-" + flag[2:]) if isinstance(value, bool) else str(value) or '""'
        assert shown[flag].startswith(text + (" from the model;" if value != usual else "")), (flag, shown[flag])
        assert (value != usual) == ("from the model" in shown[flag])
        checked += 1
    assert checked >= 4
    assert any("from the model" in text for text in shown.values())    # the demo model ships settings for each


def test_model_folder_settings_show_in_help(tmp_path):
    (tmp_path / "i2i_ctrlx.json").write_text(json.dumps({"num_inference_steps": 7, "eta": 0.5}))
    shown = shown_defaults("ctrlx", "--model", str(tmp_path))
    assert shown["--steps"] == "7 from the model; 50 otherwise"
    assert shown["--eta"] == "0.5 from the model; 1.0 otherwise"
    assert shown["--negative-prompt"] == CTRLX.config().negative_prompt       # the official default: no note


def test_bases_command_shows_the_models_analysis_settings():
    shown = shown_defaults("freecontrol", "bases")
    bases = FREECONTROL.model_config(FREECONTROL.default_model()).bases
    assert shown["--bases-steps"] == f"{bases.num_inference_steps} from the model; 200 otherwise"
    assert shown["--bases-seed"] == str(bases.seed) and shown["--seed-images"] == str(bases.num_images)
    synthesis = FREECONTROL.model_config(FREECONTROL.default_model()).inversion_steps  # the analysis inverts with it
    assert shown["--inversion-steps"] == f"{synthesis} from the model; 999 otherwise"
