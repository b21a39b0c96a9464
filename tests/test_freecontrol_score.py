"""`i2i freecontrol --score` and `i2i ctrlx --score`: structure distance and CLIP score in each JSON result, with a
tiny ViT and CLIP built in code (as for `i2i score`), and a fast exit-4 error before the diffusion model loads when
the weights are missing."""

import json
from pathlib import Path

import pytest
from test_score import models  # noqa: F401  (fixture: tiny ViT and CLIP folders)
from tiny_sd import one_thread, save_sd  # noqa: F401  (one_thread: autouse fixture)
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.metrics.score import load_scorers, score_images

SQUARE = Path(__file__).resolve().parents[1] / "examples" / "conditions" / "square_sketch.png"
FAST = ["--steps", "4", "--inversion-steps", "4", "--seed-images", "2", "--bases-steps", "4",
        "--subject", "square;square", "-q"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_sd(tmp_path_factory.mktemp("model") / "tiny-sd")


def freecontrol(*args):
    return CliRunner().invoke(app, ["freecontrol", *FAST, *map(str, args)])


def test_score_adds_both_scores_to_each_record(models, model_dir, tmp_path):  # noqa: F811
    res = freecontrol("--model", model_dir, "--cache-dir", tmp_path / "cache", "--prompt", "a red square",
                      "--condition", SQUARE, "--out", tmp_path / "out", "--json", "--score",
                      "--dino", models / "vit", "--clip", models / "clip")
    assert res.exit_code == 0, res.output
    record, summary = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert summary["kind"] == "summary"
    expected = score_images([record["image"]], [SQUARE], ["a red square"],
                            load_scorers(dino=str(models / "vit"), clip=str(models / "clip")))[0]
    assert record["self_sim"] == pytest.approx(expected["self_sim"]) and record["self_sim"] > 0
    assert record["clip_score"] == pytest.approx(expected["clip_score"])
    plain = freecontrol("--model", model_dir, "--cache-dir", tmp_path / "cache", "--prompt", "a red square",
                        "--condition", SQUARE, "--out", tmp_path / "plain", "--json")
    assert plain.exit_code == 0 and "self_sim" not in plain.stdout and "clip_score" not in plain.stdout


def test_missing_score_weights_fail_before_the_model_loads(model_dir, tmp_path, monkeypatch):
    from i2i.freecontrol.pipeline import FreeControlPipeline

    def must_not_load(*args, **kwargs):
        raise AssertionError("the diffusion model was loaded before the score weights were checked")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(FreeControlPipeline, "from_pretrained", must_not_load)
    res = freecontrol("--model", model_dir, "--prompt", "a red square", "--condition", SQUARE,
                      "--out", tmp_path / "out", "--score")
    assert res.exit_code == 4 and "facebook/dino-vitb8" in res.stderr and "hf download" in res.stderr
    assert not (tmp_path / "out").exists()


def test_ctrlx_score_measures_structure_against_the_structure_image(models, tmp_path):  # noqa: F811
    res = CliRunner().invoke(app, ["ctrlx", "--steps", "4", "--prompt", "a blue square", "--structure", str(SQUARE),
                                   "--out", str(tmp_path), "--json", "-q", "--score", "--dino", str(models / "vit"),
                                   "--clip", str(models / "clip")])
    assert res.exit_code == 0, res.output
    record, summary = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert summary["kind"] == "summary"
    expected = score_images([record["image"]], [SQUARE], ["a blue square"],
                            load_scorers(dino=str(models / "vit"), clip=str(models / "clip")))[0]
    assert record["self_sim"] == pytest.approx(expected["self_sim"])
    assert record["clip_score"] == pytest.approx(expected["clip_score"])
