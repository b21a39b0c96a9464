"""The shared diffusion core: single-file checkpoints, recommended settings, and no import circle between the
method packages."""

import subprocess
import sys

import pytest
import torch
from tiny_sd import one_thread, save_sd, save_single_file  # noqa: F401  (one_thread: autouse fixture)
from typer.testing import CliRunner


def test_single_file_checkpoint_loads_with_a_config_folder(tmp_path):
    from i2i.diffusion.model import DiffusionModel

    folder = save_sd(tmp_path / "config", seed=1)                 # same architecture, other weights
    original = save_single_file(tmp_path / "tiny.safetensors", seed=0)
    model = DiffusionModel.from_pretrained(tmp_path / "tiny.safetensors", device="cpu", config=str(folder))
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(original, name).state_dict(), getattr(model.base, name).state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k].reshape(-1), theirs[k].reshape(-1)) for k in mine)     # the file's weights
    assert model.model_id.startswith("tiny.safetensors@") and model.model_folder is None


def test_single_file_offline_without_config_is_a_usage_error(tmp_path, monkeypatch):
    from i2i.cli.app import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_single_file(tmp_path / "tiny.safetensors")
    res = CliRunner().invoke(app, ["ctrlx", "--model", str(tmp_path / "tiny.safetensors"), "--prompt", "a square",
                                   "--structure", "examples/conditions/square_sketch.png",
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--config" in res.output


def test_recommended_settings_are_applied_by_the_library():
    from i2i.ctrlx.config import CtrlXConfig
    from i2i.ctrlx.config import model_config as ctrlx_config
    from i2i.demo.model import demo_model_path
    from i2i.freecontrol.config import FreeControlConfig
    from i2i.freecontrol.config import model_config as freecontrol_config

    demo = demo_model_path()
    assert freecontrol_config(demo).num_inference_steps == 50 != FreeControlConfig().num_inference_steps
    assert ctrlx_config(demo).negative_prompt == "outline" != CtrlXConfig().negative_prompt
    assert ctrlx_config(None) == CtrlXConfig()


@pytest.mark.parametrize("module", ["i2i.freecontrol.bases", "i2i.diffusion.inversion", "i2i.ctrlx.pipeline"])
def test_no_method_package_imports_another(module):
    code = (f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith(('i2i.freecontrol', "
            "'i2i.ctrlx'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    if module.startswith("i2i.diffusion"):
        assert loaded.strip() == "[]"
    else:
        other = "i2i.ctrlx" if module.startswith("i2i.freecontrol") else "i2i.freecontrol"
        assert other not in loaded and "i2i.freecontrol.pipeline" not in loaded.replace(module, "")
