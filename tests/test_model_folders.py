"""Diffusers model folders that are incomplete, laid out the old way, saved as a weights variant only, or of a model
type i2i cannot run: each loads, or fails with exit 4 naming what is wrong, before any weights are read."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from tiny_sd import MAX_LEN, one_thread, save_sd, sd_pipeline  # noqa: F401  (one_thread: autouse fixture)
from typer.testing import CliRunner

from i2i.diffusion.loading import load_pipeline
from i2i.errors import CheckpointError


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return save_sd(tmp_path_factory.mktemp("sd") / "sd15")


@pytest.fixture
def copy(sd_folder, tmp_path):
    """A copy of the tiny SD folder to break."""
    def make(name: str = "model"):
        return shutil.copytree(sd_folder, tmp_path / name)
    return make


def edit_json(path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("component", ["tokenizer", "vae", "unet"])
def test_a_missing_component_folder_is_named(copy, component):
    folder = copy()
    shutil.rmtree(folder / component)
    with pytest.raises(CheckpointError, match=f"has no {component}/ folder.*copy the model's whole diffusers folder"):
        load_pipeline(folder)


def test_a_component_without_weights_is_named(copy):
    folder = copy()
    (folder / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="vae/ holds no weights"):
        load_pipeline(folder)


def test_an_incomplete_hub_snapshot_keeps_the_download_hint(tmp_path, sd_folder, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "hub" / "models--acme--partial"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    shutil.copy(sd_folder / "model_index.json", repo / "snapshots" / "abc123")
    with pytest.raises(CheckpointError, match=r"acme/partial: the model has no \w+/ folder.*incomplete download.*"
                                              "hf download acme/partial"):
        load_pipeline("acme/partial")


def test_a_tokenizer_of_the_old_layout_reads_as_many_tokens_as_its_text_encoder(copy):
    """vocab.json, merges.txt and special_tokens_map.json, no tokenizer_config.json: transformers' placeholder
    model_max_length (1e30) is capped at the text encoder's positions."""
    folder = copy()
    model = json.loads((folder / "tokenizer" / "tokenizer.json").read_text())["model"]
    shutil.rmtree(folder / "tokenizer")
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.json").write_text(json.dumps(model["vocab"]))
    (folder / "tokenizer" / "merges.txt").write_text(
        "#version: 0.2\n" + "".join((" ".join(m) if isinstance(m, list) else m) + "\n" for m in model["merges"]))
    (folder / "tokenizer" / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
         "pad_token": "<|endoftext|>"}))
    pipe = load_pipeline(folder).base
    assert pipe.tokenizer.model_max_length == MAX_LEN
    assert pipe.encode_prompt("a red circle", "cpu", 1, False)[0].shape == (1, MAX_LEN, 32)


@pytest.mark.parametrize("change, message", [
    ({"_class_name": "StableDiffusionInpaintPipeline"}, "inpainting models are not supported; use the base model"),
    ({"unet": ["diffusers", "UNet2DConditionModel"], "in_channels": 9}, "inpainting models are not supported"),
    ({"in_channels": 8}, "8 input channels.*use a text-to-image base model"),
    ({"_class_name": "StableDiffusionXLImg2ImgPipeline", "text_encoder": [None, None]},
     "SDXL refiner models.*use the SDXL base model"),
    ({"_class_name": "FluxPipeline", "unet": [None, None], "transformer": ["diffusers", "FluxTransformer2DModel"]},
     "a FluxPipeline model without unet.*is not supported"),
], ids=["inpaint-class", "inpaint-unet", "8-channels", "sdxl-refiner", "flux"])
def test_model_types_i2i_cannot_run_are_refused_before_loading(copy, change, message, monkeypatch):
    import diffusers

    folder = copy()
    channels = change.pop("in_channels", None)
    if channels is not None:
        edit_json(folder / "unet" / "config.json", in_channels=channels)
    edit_json(folder / "model_index.json", **change)
    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", None)     # never reached
    with pytest.raises(CheckpointError, match=message):
        load_pipeline(folder)


def test_an_inpainting_model_is_exit_4_in_the_cli(copy, tmp_path):
    from i2i.cli.app import app

    folder = copy()
    edit_json(folder / "model_index.json", _class_name="StableDiffusionInpaintPipeline")
    res = CliRunner().invoke(app, ["generate", "-m", str(folder), "--prompt", "a red circle", "--steps", "1",
                                   "--out", str(tmp_path / "o.png")])
    assert res.exit_code == 4 and "inpainting models are not supported" in res.output, res.output


def test_a_folder_of_fp16_variant_weights_only_loads(tmp_path, capfd):
    import diffusers

    pipe = sd_pipeline(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.save_pretrained(tmp_path / "fp16", variant="fp16")
    assert (tmp_path / "fp16" / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert not (tmp_path / "fp16" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    (tmp_path / "fp16" / "vae" / "diffusion_pytorch_model.fp16.safetensors").rename(
        tmp_path / "fp16" / "vae" / "diffusion_pytorch_model.safetensors")      # a mix: the vae's plain weights
    before = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()                              # as the CLI sets it
    capfd.readouterr()
    try:
        loaded = load_pipeline(tmp_path / "fp16").base
    finally:
        diffusers.utils.logging.set_verbosity(before)
    assert "An error occurred" not in capfd.readouterr().err
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
