"""``i2i cyclegan eval --metrics``: FID/KID on a tiny folder run with the offline stand-in extractor, exit codes
(including the removed domain score), --json, overwrite rules, one-sided runs and a custom extractor from Python."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.cyclegan.evaluate import EvalConfig, evaluate
from i2i.errors import UsageError
from i2i.metrics.features import FeatureExtractor


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalm")
    rng = random.Random(0)
    for split, colour in (("trainA", (200, 40, 40)), ("trainB", (40, 40, 200)), ("testA", (200, 40, 40)),
                          ("testB", (40, 40, 200))):
        (root / "data" / split).mkdir(parents=True)
        for i in range(8):
            c = tuple(max(0, min(255, v + rng.randint(-40, 40))) for v in colour)
            Image.new("RGB", (36, 32), c).save(root / "data" / split / f"{i}.png")
    res = run("cyclegan", "train", root / "data", "--run-dir", root / "run", "--max-iters", 2, "--ngf", 8,
              "--ndf", 8, "--crop-size", 32, "--load-size", 32, "--num-workers", 0, "--quiet")
    assert res.exit_code == 0, res.output
    return root / "run"


def test_eval_metrics_json_and_no_second_overwrite(folder_run, tmp_path):
    out = tmp_path / "ev"
    res = run("cyclegan", "eval", folder_run, "--metrics", "fid,kid", "--features", "random-cnn",
              "--out", out, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json_lines(res.stdout)[0]
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["features"].startswith("random-cnn") and "not Inception" in summary["features"]
    assert summary["resolution"] == "train" and summary["image_size"] == "32x32 px"
    assert summary["directions"] == ["AtoB", "BtoA"]
    for direction in ("AtoB", "BtoA"):
        stats = summary[direction]
        assert stats["images"] == 8 and stats["real_target_images"] == 8
        assert stats["fid"] > 0 and stats["kid_std"] >= 0 and stats["kid_subset_size"] == 4
        assert stats["cycle_l1"] > 0
    before = (out / "summary.json").stat().st_mtime_ns
    again = run("cyclegan", "eval", folder_run, "--metrics", "kid", "--features", "random-cnn", "--out", out)
    assert again.exit_code == 6 and "--overwrite" in again.stderr and "eval AtoB" not in again.stderr
    assert (out / "summary.json").stat().st_mtime_ns == before
    table = run("cyclegan", "eval", folder_run, "--metrics", "fid,kid", "--features", "random-cnn", "--out", out,
                "--overwrite", "--resolution", "original")
    assert table.exit_code == 0, table.output
    assert "KID ± std" in table.stderr and "biased" in table.stderr and "original sizes" in table.stderr
    assert json.loads((out / "summary.json").read_text())["resolution"] == "original"


def test_eval_metric_errors_have_their_exit_codes(folder_run, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("I2I_INCEPTION_WEIGHTS", raising=False)
    res = run("cyclegan", "eval", folder_run, "--metrics", "fid", "--out", tmp_path / "a")
    assert res.exit_code == 4 and "weights-inception-2015-12-05-6726825d.pth" in res.stderr
    assert not (tmp_path / "a").exists()
    res = run("cyclegan", "eval", folder_run, "--metrics", "fid,is", "--out", tmp_path / "b")
    assert res.exit_code == 2 and "is" in res.stderr
    res = run("cyclegan", "eval", folder_run, "--metrics", "kid", "--features", "vgg", "--out", tmp_path / "c")
    assert res.exit_code == 2
    res = run("cyclegan", "eval", folder_run, "--resolution", "full", "--out", tmp_path / "d")
    assert res.exit_code == 2
    res = run("cyclegan", "eval", folder_run, "--metrics", "kid", "--features", "random-cnn", "--dataroot",
              "builtin:shapes", "--out", tmp_path / "e")
    assert res.exit_code == 2 and "image-folder" in res.stderr


def test_the_removed_domain_score_is_a_usage_error_that_says_why(folder_run, tmp_path):
    res = run("cyclegan", "eval", folder_run, "--metrics", "kid,domain", "--features", "random-cnn", "--out",
              tmp_path / "f")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "domain score was removed because" in res.stderr and "choose from fid,kid" in res.stderr
    assert not (tmp_path / "f").exists()
    with pytest.raises(UsageError, match="domain score was removed"):     # the library says the same
        EvalConfig(metrics=("domain",))


def test_eval_help_warns_about_fid_bias():
    res = run("cyclegan", "eval", "--help")
    assert res.exit_code == 0
    assert "biased" in res.stdout and "random-cnn" in res.stdout and "--inception-weights" in res.stdout


def test_one_sided_run_is_evaluated_a_to_b_only(folder_run, tmp_path):
    one = tmp_path / "one"
    shutil.copytree(folder_run, one)
    for ckpt in (one / "checkpoints").iterdir():
        (ckpt / "G_B.safetensors").unlink()
    res = run("cyclegan", "eval", one, "--metrics", "kid", "--features", "random-cnn", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json_lines(res.stdout)[0]
    assert summary["directions"] == ["AtoB"] and "BtoA" not in summary
    assert "cycle_l1" not in summary["AtoB"] and "kid" in summary["AtoB"]


class MeanColour(nn.Module):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[1:]))
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def test_evaluate_from_python_with_a_custom_extractor(folder_run, tmp_path):
    net = MeanColour()
    ex = FeatureExtractor(net, name="mean-colour", size=16, value_range="unit")
    summary = evaluate(folder_run, tmp_path / "py", EvalConfig(metrics=("kid",)), extractor=ex)
    assert summary["features"] == "mean-colour" and set(net.shapes) == {(3, 16, 16)}
    # real B, translated A->B, real A, translated B->A: 4 sets of 8 images
    assert len(net.shapes) == 4
    assert summary["AtoB"]["kid"] == summary["AtoB"]["kid"] and "fid" not in summary["AtoB"]


def test_evaluate_from_python_writes_where_the_command_writes(folder_run, tmp_path):
    import shutil

    from i2i.cyclegan.evaluate import default_eval_dir

    run = tmp_path / "run"
    shutil.copytree(folder_run, run)
    shutil.rmtree(default_eval_dir(run), ignore_errors=True)          # (an earlier test's evaluation)
    ex = FeatureExtractor(MeanColour(), name="mean-colour", size=16, value_range="unit")
    evaluate(run, config=EvalConfig(metrics=("kid",)), extractor=ex)       # no out_dir, no device: the CLI's
    assert (default_eval_dir(run) / "summary.json").is_file() and (default_eval_dir(run) / "grid.png").is_file()


def test_a_test_set_with_no_readable_image_is_an_input_error(folder_run, tmp_path):
    """Only unreadable files in testA: reported "images": 0, cycle L1 0.0 (a perfect score) with exit 0."""
    data = tmp_path / "data"
    (data / "testA").mkdir(parents=True)
    (data / "testA" / "broken.png").write_bytes(b"\x89PNG not really")
    shutil.copytree(folder_run.parent / "data" / "testB", data / "testB")
    res = run("cyclegan", "eval", folder_run, "--dataroot", data, "--out", tmp_path / "e")
    assert res.exit_code == 3 and "could be read" in res.stderr, res.output
