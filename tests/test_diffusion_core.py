"""The shared diffusion core: single-file checkpoints, recommended settings, and no import circle between the
method packages."""

import subprocess
import sys
import warnings

import pytest
import torch
from tiny_sd import one_thread, save_sd, save_single_file, sdxl_pipeline  # noqa: F401  (one_thread: autouse fixture)
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


def test_a_lora_or_a_file_of_another_architecture_is_one_line_naming_the_file(tmp_path):
    from safetensors.torch import save_file

    from i2i.diffusion.loading import load_pipeline
    from i2i.errors import CheckpointError

    config = save_sd(tmp_path / "config")
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 16)},
              str(tmp_path / "lora.safetensors"))
    with pytest.raises(CheckpointError) as info:
        load_pipeline(tmp_path / "lora.safetensors", config=str(config))
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'lora.safetensors'}: not a whole SD/SDXL checkpoint matching --config")
    assert "\n" not in message and "(SingleFileComponentError: " in message and "not a LoRA" in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdxl_pipeline().save_pretrained(tmp_path / "xl")
    save_single_file(tmp_path / "sd15.safetensors")
    with pytest.raises(CheckpointError, match=r"sd15.safetensors: not a whole SD/SDXL checkpoint matching --config "
                                              r".*xl \(KeyError: "):
        load_pipeline(tmp_path / "sd15.safetensors", config=str(tmp_path / "xl"))


def test_the_freecontrol_page_says_a_single_file_loads_with_config_as_it_does():
    from pathlib import Path

    page = " ".join((Path(__file__).resolve().parents[1] / "docs" / "freecontrol.md").read_text().split())
    assert "first convert it" not in page and "`--model x.safetensors` (or `.ckpt`), with `--config DIR`" in page


def test_single_file_offline_without_config_is_a_usage_error(tmp_path, monkeypatch):
    from i2i.cli.app import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_single_file(tmp_path / "tiny.safetensors")
    res = CliRunner().invoke(app, ["ctrlx", "--model", str(tmp_path / "tiny.safetensors"), "--prompt", "a square",
                                   "--structure", "examples/conditions/square_sketch.png",
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--config" in res.output
    import i2i.hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(i2i.hub, "hub_reachable", lambda *a, **k: False)     # no network: said at once, no retries
    res = CliRunner().invoke(app, ["ctrlx", "--model", str(tmp_path / "tiny.safetensors"), "--prompt", "a square",
                                   "--structure", "examples/conditions/square_sketch.png",
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "needs --config DIR" in res.output and "cannot be reached" in res.output
    res = CliRunner().invoke(app, ["ctrlx", "--config", str(tmp_path), "--prompt", "a square",
                                   "--structure", "examples/conditions/square_sketch.png",
                                   "--out", str(tmp_path / "o")])      # the demo model's folder: --config unused
    assert res.exit_code == 2 and "--config describes a single-file --model" in res.output, res.output


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



@pytest.mark.parametrize("method, text, message", [
    ("freecontrol", '{"num_inference_steps": "ten"}', r'"num_inference_steps" must be of type int \(got "ten"\)'),
    ("freecontrol", '{"num_inference_steps": 20.5}', r'"num_inference_steps" must be of type int'),
    ("freecontrol", '{"negative_prompt": 3}', r'"negative_prompt" must be of type str'),
    ("freecontrol", '{"bases": 5}', r'"bases" must be an object of settings'),
    ("freecontrol", '{"bases": {"block": 3}}', r'"bases.block" must be of type str \| None'),
    ("freecontrol", '[1]', "expected an object of settings, not list"),
    ("freecontrol", '{"structure_weight": -5}', "a recommended setting is invalid: --structure-weight"),
    ("ctrlx", '{"self_recurrence": [0.1, 0.5]}', r'"self_recurrence" must be of type tuple\[float, float, int\]'),
    ("ctrlx", '{"num_inference_steps": 0}', "a recommended setting is invalid: --steps must be between 1"),
])
def test_bad_recommended_settings_are_checkpoint_errors_naming_the_file(tmp_path, method, text, message):
    from i2i.ctrlx.config import CTRLX
    from i2i.errors import CheckpointError
    from i2i.freecontrol.config import FREECONTROL

    (tmp_path / f"i2i_{method}.json").write_text(text)
    declared = {"freecontrol": FREECONTROL, "ctrlx": CTRLX}[method]
    with pytest.raises(CheckpointError, match=f"i2i_{method}.json: {message}"):
        declared.model_config(tmp_path)
    (tmp_path / f"i2i_{method}.json").write_text('{"num_inference_steps": 7, "negative_prompt": "x"}')
    assert declared.model_config(tmp_path).num_inference_steps == 7

def test_the_settings_line_names_nested_settings_and_where_they_came_from():
    from i2i.demo.model import demo_model_path
    from i2i.diffusion.settings import describe
    from i2i.freecontrol.config import FREECONTROL, FreeControlConfig
    from i2i.freecontrol.config import model_config as freecontrol_config

    demo = demo_model_path()
    line = describe(freecontrol_config(demo), FREECONTROL.recommended(demo), FREECONTROL.shown)
    assert "bases.block 'up_blocks.2'" in line and "structure_weight 3000.0" in line
    assert line.endswith("negative_prompt, inversion_steps, bases.block)")
    # a flag that changes another analysis setting leaves the block named as the model's
    from i2i.diffusion.batch import method_settings
    config, from_model = method_settings(FREECONTROL, str(demo), {"bases": {"num_inference_steps": 10}, "n_components": 8})
    line = describe(config, from_model, FREECONTROL.shown)
    assert "n_components 8" in line and line.endswith("negative_prompt, inversion_steps, bases.block)")
    assert "n_components," not in line.split("(")[1]
    # an SD folder without settings: the family picks the block, and nothing is said to come from the model
    plain = describe(FreeControlConfig(), {}, FREECONTROL.shown)
    assert "bases.block default" in plain and "recommended" not in plain


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


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_text_encoders_on_their_own_device_run_in_fp32_and_hand_over_the_unets_dtype(family):
    import warnings

    from tiny_sd import sd_pipeline, sdxl_pipeline

    from i2i.diffusion.model import DiffusionModel

    build = sd_pipeline if family == "sd" else sdxl_pipeline
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                       # bf16 on a CPU without native support
        split = DiffusionModel(build(), model_id="tiny", device="cpu", precision="bf16", text_encoder_device="cpu")
        together = DiffusionModel(build(), model_id="tiny", device="cpu", precision="bf16")
    reference = DiffusionModel(build(), model_id="tiny", device="cpu")                        # all fp32
    encoders = [split.base.text_encoder] + ([split.base.text_encoder_2] if family == "sdxl" else [])
    assert all(p.dtype == torch.float32 for e in encoders for p in e.parameters())
    assert split.unet.dtype == torch.bfloat16 and together.base.text_encoder.dtype == torch.bfloat16
    assert split.model_id != together.model_id                # other embeddings: other cached inversions
    got, want = split.encode_text(["a red square"], 32, negative=""), reference.encode_text(["a red square"], 32,
                                                                                           negative="")
    for a, b in ((got, want), (got.negative, want.negative)):
        assert a.embeds.dtype == torch.bfloat16 and torch.equal(a.embeds, b.embeds.to(torch.bfloat16))
        if family == "sdxl":
            assert torch.equal(a.pooled, b.pooled.to(torch.bfloat16)) and a.time_ids.dtype == torch.bfloat16


def test_long_prompt_warnings_point_at_the_callers_line():
    import dataclasses
    import warnings
    from pathlib import Path

    from i2i.ctrlx import CtrlXPipeline
    from i2i.demo.model import demo_model_path
    from i2i.freecontrol import FreeControlPipeline

    sketch = Path(__file__).resolve().parents[1] / "examples" / "conditions" / "square_sketch.png"
    long_prompt = " ".join(["a red square"] * 20)
    fc = FreeControlPipeline.from_pretrained(demo_model_path(), device="cpu")
    cx = CtrlXPipeline.from_pretrained(demo_model_path(), device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fc(long_prompt, sketch, dataclasses.replace(fc.default_config(), structure_weight=0.0, num_inference_steps=2))
        cx(long_prompt, sketch, config=dataclasses.replace(cx.default_config(), num_inference_steps=2))
    long_ones = [w for w in caught if "tokens long" in str(w.message)]
    assert len(long_ones) >= 2 and all(w.filename == __file__ for w in long_ones), \
        [(w.filename, str(w.message)[:40]) for w in long_ones]


def test_an_aspect_ratio_the_output_cannot_keep_is_warned_about():
    import dataclasses
    import warnings

    from PIL import Image

    from i2i.ctrlx import CtrlXPipeline
    from i2i.demo.model import demo_model_path

    cx = CtrlXPipeline.from_pretrained(demo_model_path(), device="cpu")
    config = dataclasses.replace(cx.default_config(), num_inference_steps=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        strip = cx("a square", Image.new("RGB", (3000, 20), "white"), config=config, decode_branches=False)
        wide = cx("a square", Image.new("RGB", (300, 200), "white"), config=config, decode_branches=False)
    kept = [w for w in caught if "cannot be kept" in str(w.message)]
    assert [str(w.message) for w in kept] == [f"the image's aspect ratio (3000x20) cannot be kept at 64 px: the "
                                              f"output is 64x{cx.size_unit}, its short side at least "
                                              f"{cx.size_unit} px"]
    assert kept[0].filename == __file__
    assert strip.images[0].size == (64, cx.size_unit) and wide.images[0].size[0] == 64    # 1.5:1 is kept (rounded)
