"""The demo model's tokenizer, data and training script (a few steps; the real run is never done in tests)."""

import json
import sys
from pathlib import Path

import pytest
import torch

from i2i.demo.data import GENERIC_PROMPT, VOCABULARY, sample
from i2i.demo.tokenizer import build_tokenizer, word_merges
from i2i.shapes import read_shape

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "demo"))   # the training script
from train import DemoTrainConfig, train  # noqa: E402


def test_every_vocabulary_word_is_one_token():
    tok = build_tokenizer(VOCABULARY, 32)
    for word in VOCABULARY:
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    ids = tok("a red circle").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) == 5
    generic = tok(GENERIC_PROMPT.format("square")).input_ids
    assert len(generic) <= 32 and tok.unk_token_id not in generic[1:-1]
    # unknown words still tokenize (character by character) and decode back
    odd = tok("zebra!", add_special_tokens=False).input_ids
    assert len(odd) > 1 and tok.decode(odd).replace(" ", "") == "zebra!"
    assert tok.model_max_length == 32


def test_merges_do_not_disturb_earlier_words():
    merges = word_merges(["quality", "square", "re", "red", "green"])
    assert len(merges) == len(set(merges))
    tok = build_tokenizer(["quality", "square", "re", "red", "green"], 16)
    assert tok.convert_ids_to_tokens(tok("square green", add_special_tokens=False).input_ids) == \
        ["square</w>", "green</w>"]


def test_tokenizer_round_trip(tmp_path):
    from transformers import CLIPTokenizer

    tok = build_tokenizer(VOCABULARY, 32)
    tok.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = "an outline of a triangle"
    assert again(text).input_ids == tok(text).input_ids and again.model_max_length == 32


def test_samples_are_deterministic_and_readable():
    a, b = sample(12, seed=3), sample(12, seed=3)
    assert a.caption == b.caption and a.image.tobytes() == b.image.tobytes()
    kinds = {"outline": 0, "filled": 0}
    for i in range(200):
        s = sample(i)
        kinds[s.style] += 1
        assert s.spec.shape in s.caption
        if s.style == "filled":
            assert read_shape(s.image).shape == s.spec.shape
            if s.caption.startswith("a ") and len(s.caption.split()) == 3:
                assert s.spec.colour in s.caption
        else:
            assert s.caption.startswith("an outline of")
    assert 10 < kinds["outline"] < 60


def test_training_script_writes_a_loadable_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    cfg = DemoTrainConfig(vae_steps=3, vae_batch=4, dataset_size=32, unet_steps=3, unet_batch=8, eval_every=3,
                          eval_steps=2)
    out = train(cfg, tmp_path / "demo")
    meta = json.loads((out / "i2i_demo.json").read_text())
    assert meta["unet_steps_done"] == 3 and 0 <= meta["eval"]["shape_accuracy"] <= 1
    log = [json.loads(line) for line in (tmp_path / "demo.log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log][-1] == "unet_eval"
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert pipe.tokenizer.model_max_length == 32 and pipe.scheduler.config.steps_offset == 1
    assert "up_blocks.1.attentions.0.transformer_blocks.0.attn2" in dict(pipe.unet.named_modules())
    assert pipe.vae.config.scaling_factor == pytest.approx(meta and pipe.vae.config.scaling_factor)
    img = pipe("a red circle", num_inference_steps=2, height=64, width=64,
               generator=torch.Generator().manual_seed(0)).images[0]
    assert img.size == (64, 64)
    from i2i.demo.model import demo_model_path

    for method in ("freecontrol", "ctrlx", "generate"):     # the shipped model's recommended settings, rewritten
        name = f"i2i_{method}.json"
        assert json.loads((out / name).read_text()) == json.loads((demo_model_path() / name).read_text())


@pytest.mark.parametrize("script", ["train.py", "report.py", "appearance_report.py", "ctrlx_report.py", "protocol.py"])
def test_demo_tools_run_as_scripts(script):
    import subprocess

    path = Path(__file__).resolve().parents[1] / "examples" / "demo" / script
    proc = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--help" in proc.stdout, proc.stderr[-1000:]
