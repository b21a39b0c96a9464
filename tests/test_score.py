"""``i2i score``: DINO-style self-similarity distance and CLIP score on a tiny ViT and a tiny CLIP built in code,
saved with save_pretrained and loaded by path (offline); the JSONL route; errors without weights."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.metrics.clip_score import load_clip
from i2i.metrics.score import load_scorers, score_images, score_records
from i2i.metrics.selfsim import cosine_self_similarity, imagenet_tensor, load_dino, target_size

DEMO_TOKENIZER = "i2i/assets/demo-shapes/tokenizer"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer, ViTConfig,
                              ViTModel)

    root = tmp_path_factory.mktemp("score")
    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             image_size=32, patch_size=8), add_pooling_layer=False)
    vit.save_pretrained(root / "vit")
    tok = CLIPTokenizer.from_pretrained(DEMO_TOKENIZER)
    clip = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=tok.model_max_length),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2), projection_dim=16))
    clip.save_pretrained(root / "clip")
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                     crop_size={"height": 32, "width": 32}),
                  tokenizer=tok).save_pretrained(root / "clip")
    return root


def shape_image(path, box, colour):
    img = Image.new("RGB", (64, 48), "white")
    ImageDraw.Draw(img).rectangle(box, fill=colour)
    img.save(path)
    return path


def test_self_similarity_uses_the_last_layer_keys(models, tmp_path):
    dino = load_dino(str(models / "vit"))
    img = Image.open(shape_image(tmp_path / "a.png", (10, 10, 30, 30), "red"))
    size = target_size(*img.size)
    assert size == (224, 296)            # shorter side 224, multiples of the patch size 8
    x = imagenet_tensor(img, size)
    keys = dino.keys(x)[0]
    # by hand: the last layer's key projection of its (layer-normed) input
    with torch.no_grad():
        out = dino.model(pixel_values=x, interpolate_pos_encoding=True, output_hidden_states=True)
        last = dino.model.encoder.layer[-1] if hasattr(dino.model, "encoder") else dino.model.layers[-1]
        expected = last.attention.k_proj(last.layernorm_before(out.hidden_states[-2]))[0]
    assert keys.shape == (1 + (224 // 8) * (296 // 8), 32)
    assert torch.allclose(keys, expected, atol=1e-5)
    sim = cosine_self_similarity(keys)
    assert torch.allclose(sim.diagonal(), torch.ones(len(keys)), atol=1e-5)


def test_scores_from_python(models, tmp_path):
    cond = shape_image(tmp_path / "cond.png", (10, 10, 30, 30), "black")
    same = shape_image(tmp_path / "same.png", (10, 10, 30, 30), "black")
    moved = shape_image(tmp_path / "moved.png", (34, 20, 60, 44), "black")
    scorers = load_scorers(dino=str(models / "vit"), clip=str(models / "clip"))
    rows = score_images([same, moved], [cond], ["a red square"], scorers)
    assert rows[0]["self_sim"] == pytest.approx(0.0, abs=1e-10) and rows[1]["self_sim"] > 1e-4
    assert 0 <= rows[0]["clip_score"] <= 100
    # CLIP score by another route: the model's own logits are logit_scale * cos
    clip = load_clip(str(models / "clip"))
    inputs = clip.processor(text=["a red square"], images=[Image.open(same).convert("RGB")], return_tensors="pt",
                            padding=True, truncation=True)
    with torch.no_grad():
        out = clip.model(**inputs)
    cos = (out.logits_per_image / clip.model.logit_scale.exp()).item()
    assert rows[0]["clip_score"] == pytest.approx(100 * max(cos, 0.0), abs=1e-3)
    only_clip = score_images([same], prompts=["a red square"], scorers=scorers)
    assert set(only_clip[0]) == {"clip_score"}
    recs = score_records([{"image": str(moved), "condition": str(cond), "prompt": "x", "seed": 3},
                          {"status": "error"}], scorers)
    assert recs[0]["seed"] == 3 and recs[0]["self_sim"] == rows[1]["self_sim"] and recs[1] == {"status": "error"}


def test_score_cli_flags_and_jsonl(models, tmp_path):
    cond = shape_image(tmp_path / "cond.png", (10, 10, 30, 30), "black")
    out1 = shape_image(tmp_path / "o1.png", (12, 10, 32, 30), "red")
    out2 = shape_image(tmp_path / "o2.png", (30, 5, 60, 40), "blue")
    flags = ["--dino", models / "vit", "--clip", models / "clip"]
    res = run("score", out1, out2, "--condition", cond, "--prompt", "a red square", *flags, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["image"] for r in lines] == [str(out1), str(out2)]
    assert all("self_sim" in r and "clip_score" in r for r in lines)
    table = run("score", out1, out2, "--condition", cond, *flags)
    assert table.exit_code == 0 and "self_sim" in table.stderr and "mean" in table.stderr
    jsonl = tmp_path / "fc.jsonl"
    jsonl.write_text(json.dumps({"job": 0, "prompt": "a red square", "condition": str(cond), "seed": 1,
                                 "image": str(out1), "guided_steps": 3}) + "\n")
    res = run("score", "--jsonl", jsonl, *flags, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["job"] == 0 and rec["self_sim"] == lines[0]["self_sim"]
    assert rec["clip_score"] == pytest.approx(lines[0]["clip_score"])
    ctrlx = tmp_path / "ctrlx.jsonl"                                  # Ctrl-X names its condition "structure"
    ctrlx.write_text(json.dumps({"job": 0, "prompt": "a red square", "structure": str(cond), "appearance": None,
                                 "image": str(out1)}) + "\n" + json.dumps({"kind": "summary", "command": "ctrlx"}))
    res = run("score", "--jsonl", ctrlx, *flags, "--scores", "self-sim", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["self_sim"] == lines[0]["self_sim"]


def test_score_cli_errors(models, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    img = shape_image(tmp_path / "o.png", (10, 10, 30, 30), "red")
    res = run("score", img, "--condition", img)          # the default DINO is not here: exit 4, what to get
    assert res.exit_code == 4 and "facebook/dino-vitb8" in res.stderr and "hf download" in res.stderr
    res = run("score", img, "--prompt", "x", "--clip", tmp_path / "no-such-clip")
    assert res.exit_code == 4 and "no such model folder" in res.stderr
    assert run("score", img).exit_code == 2                                   # nothing to score
    assert run("score").exit_code == 2
    assert run("score", img, img, "--prompt", "a", "--prompt", "b", "--prompt", "c").exit_code == 2
    assert run("score", "--jsonl", tmp_path / "missing.jsonl").exit_code == 3
    assert run("score", tmp_path / "missing.png", "--condition", img, "--dino", models / "vit").exit_code == 3
    # Inputs and flags are checked before the weights: the default DINO/CLIP are not here, yet these say so first
    res = run("score", tmp_path / "missing.png", "--prompt", "x")
    assert res.exit_code == 3 and "missing.png: no such file" in res.stderr
    res = run("score", img, "--condition", tmp_path / "nothere.png")
    assert res.exit_code == 3 and "nothere.png: no such file" in res.stderr
    res = run("score", tmp_path, "--prompt", "x")                            # a folder: its images are meant
    assert res.exit_code == 3 and "a folder, not an image: give the image files in it" in res.stderr, res.output
    res = run("score", img, "--condition", img, "--scores", "clip")
    assert res.exit_code == 2 and "--scores clip needs a prompt" in res.stderr
