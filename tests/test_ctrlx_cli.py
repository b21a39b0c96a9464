"""`i2i ctrlx` end to end on the bundled demo model, and the job loop that it shares with `i2i freecontrol`."""

import json
from pathlib import Path

import pytest
from PIL import Image
from tiny_sd import one_thread  # noqa: F401  (one_thread: autouse fixture)
from typer.testing import CliRunner

from i2i.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
SQUARE = ROOT / "examples" / "conditions" / "square_sketch.png"
BLUE = ROOT / "examples" / "conditions" / "blue_square.png"


def json_lines(text):
    """The per-image records (the batch's closing summary record left out)."""
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("kind") != "summary"]


def ctrlx(*args):
    return CliRunner().invoke(app, ["ctrlx", "--steps", "4", *map(str, args)])


def test_ctrlx_writes_images_and_json_records(tmp_path):
    res = ctrlx("--prompt", "a blue square", "--structure", SQUARE, "--appearance", BLUE, "-n", "2", "--json",
                "--save-branches", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    records = json_lines(res.stdout)
    assert [Path(r["image"]).name for r in records] == ["000-square-sketch-a-blue-square-0.png",
                                                       "000-square-sketch-a-blue-square-1.png"]
    assert records[0]["structure"] == str(SQUARE) and records[0]["appearance"] == str(BLUE)
    # 4 steps with the demo model's structure schedule (0.3): round(1.2) = 1 controlled step
    assert records[0]["structure_steps"] == 1 and Path(records[0]["appearance_branch"]).is_file()
    assert Image.open(records[0]["image"]).size == (64, 64)


def test_existing_output_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    from i2i.ctrlx.pipeline import CtrlXPipeline

    target = tmp_path / "one.png"
    Image.new("RGB", (4, 4)).save(target)
    monkeypatch.setattr(CtrlXPipeline, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("loaded")))
    res = ctrlx("--prompt", "a blue square", "--structure", SQUARE, "--out", target)
    assert res.exit_code == 6 and "already exists" in res.output


def test_jobs_file_and_errors(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"prompt": "a square", "structure": str(SQUARE), "appearance": "missing.png"}) + "\n")
    res = ctrlx("--jobs", jobs, "--out", tmp_path / "o")
    assert res.exit_code == 3 and "missing.png" in res.output
    assert ctrlx("--prompt", "a square", "--out", tmp_path).exit_code == 2             # no --structure
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a square", "structure": str(SQUARE), "condition": "x"}) + "\n")
    res = ctrlx("--jobs", bad)
    assert res.exit_code == 2 and "unknown key" in res.output
    res = ctrlx("--prompt", "a square", "--structure", SQUARE, "--structure-schedule", "2")
    assert res.exit_code == 2


def test_job_names_and_seeds_are_checked_before_the_model_loads(tmp_path, monkeypatch):
    from i2i.ctrlx.pipeline import CtrlXPipeline
    from i2i.seeds import MAX_SEED

    monkeypatch.setattr(CtrlXPipeline, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("loaded")))
    jobs = tmp_path / "jobs.jsonl"
    for name in ("../../escape", "sub/x", ".."):
        jobs.write_text(json.dumps({"prompt": "a square", "structure": str(SQUARE), "name": name}) + "\n")
        res = ctrlx("--jobs", jobs, "--out", tmp_path / "o")
        assert res.exit_code == 2 and "must be a file name" in res.output, res.output
    assert not list(tmp_path.parent.glob("escape*")) and not (tmp_path / "o").exists()
    jobs.write_text("".join(json.dumps({"prompt": p, "structure": str(SQUARE), "name": "x"}) + "\n"
                            for p in ("a square", "a circle")))
    res = ctrlx("--jobs", jobs, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "jobs 0 and 1 would both write x.png" in res.output, res.output
    for seed, prompts in ((-1, ["a"]), (MAX_SEED + 1, ["a"]), (10**20, ["a"]), (MAX_SEED, ["a", "b"])):
        res = ctrlx(*[x for p in prompts for x in ("--prompt", p)], "--structure", SQUARE, "--seed", seed,
                    "--out", tmp_path / "o")
        assert res.exit_code == 2 and f"must lie between 0 and {MAX_SEED}" in res.output, res.output


def test_settings_line_names_the_models_recommended_settings(tmp_path):
    res = ctrlx("--prompt", "a red square", "--structure", SQUARE, "--out", tmp_path / "x.png")
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if "settings:" in x)
    assert "num_inference_steps 4" in line and "from the model's recommended settings" in line


def test_one_job_loop_for_both_methods():
    from i2i.ctrlx.config import CTRLX_JOBS
    from i2i.diffusion.jobs import build_jobs, output_names
    from i2i.freecontrol.config import FREECONTROL_JOBS

    fc = build_jobs(FREECONTROL_JOBS, ["a red square"], {"condition": [str(SQUARE)]}, None,
                    {"num_images": 2, "img2img": False}, 7)
    cx = build_jobs(CTRLX_JOBS, ["a red square"], {"structure": [str(SQUARE)], "appearance": []}, None,
                    {"num_images": 2}, 7)
    assert fc[0]["name"] == cx[0]["name"] == "000-square-sketch-a-red-square" and fc[0]["seed"] == cx[0]["seed"] == 7
    assert [n["image"].name for n in output_names(cx[0], Path("o"))] == [n["image"].name for n in
                                                                         output_names(fc[0], Path("o"))]
    two = build_jobs(CTRLX_JOBS, ["a", "b"], {"structure": [str(SQUARE)], "appearance": [str(BLUE)]}, None,
                     {"num_images": 1}, 0)
    assert [j["appearance"] for j in two] == [str(BLUE)] * 2 and [j["seed"] for j in two] == [0, 1]


def test_text_encoder_device_flag(tmp_path):
    res = ctrlx("--prompt", "a blue square", "--structure", SQUARE, "--text-encoder-device", "cpu", "--out",
                tmp_path / "a.png")
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "a.png").size == (64, 64)
    res = ctrlx("--prompt", "a blue square", "--structure", SQUARE, "--text-encoder-device", "tpu", "--out",
                tmp_path / "b.png")
    assert res.exit_code == 2 and "unknown device" in res.output, res.output
