"""The CLI end to end: train -> translate -> eval -> import/export, --json output, exit codes, cold start."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.errors import EXIT_USAGE

TINY = ["--ngf", "8", "--ndf", "8", "--shapes-count", "8", "--batch-size", "2", "--crop-size", "32",
        "--load-size", "32", "--num-workers", "0", "--quiet"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def json_lines(text):
    """The JSON records of a command's output, a batch's closing summary record (``kind: summary``) left out."""
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("kind") != "summary"]


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    res = run("cyclegan", "train", "builtin:shapes", "--run-dir", run_dir, "--max-iters", 6, *TINY, "--json")
    assert res.exit_code == 0, res.output
    return run_dir, json_lines(res.stdout)


def test_help_does_not_import_torch():
    code = ("import sys; from i2i.cli.app import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "cyclegan" in out.stdout


def test_cyclegan_help_lists_commands():
    res = run("cyclegan", "--help")
    assert res.exit_code == 0
    for cmd in ("train", "translate", "eval", "import", "export"):
        assert cmd in res.stdout


def test_train_json_and_run_folder(shapes_run):
    run_dir, records = shapes_run
    assert len(records) == 1 and records[0]["iterations"] == 6
    assert set(records[0]["losses"]) >= {"D_A", "G_A", "cycle_A", "idt_A"}
    assert (run_dir / "config.json").is_file() and (run_dir / "latest").is_file()


def test_resume_of_a_finished_run_says_so(shapes_run):
    run_dir, _ = shapes_run
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    res = run("cyclegan", "train", "builtin:shapes", "--run-dir", run_dir, "--resume", "--max-iters", 6, "--json")
    assert res.exit_code == 0, res.output
    (record,) = json_lines(res.stdout)
    assert record["iterations"] == record["start_iteration"] == 6
    assert record["checkpoint"].endswith("iter_00000006") and "nothing to do" in res.stderr
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before


def test_resume_below_the_run_keeps_its_config(shapes_run):
    """--resume --max-iters 3 on a run at 6 trains nothing, so config.json must keep the 6 it records."""
    run_dir, _ = shapes_run
    recorded = (run_dir / "config.json").read_bytes()
    res = run("cyclegan", "train", "builtin:shapes", "--run-dir", run_dir, "--resume", "--max-iters", 3, "--json")
    assert res.exit_code == 0, res.output
    assert json_lines(res.stdout)[0]["iterations"] == 6 and "at or past" in res.stderr
    assert (run_dir / "config.json").read_bytes() == recorded


def test_train_refuses_existing_run(shapes_run):
    run_dir, _ = shapes_run
    res = run("cyclegan", "train", "builtin:shapes", "--run-dir", run_dir, "--max-iters", 2, *TINY)
    assert res.exit_code == 6 and "--resume" in res.stderr and "Traceback" not in res.output


def test_translate_eval_and_exit_codes(shapes_run, tmp_path):
    run_dir, _ = shapes_run
    src = tmp_path / "in"
    (src / "nested").mkdir(parents=True)
    Image.new("RGB", (97, 131), "orange").save(src / "nested" / "odd.jpg")
    Image.new("RGB", (40, 40), "blue").save(src / "b.png")
    out = tmp_path / "out"
    res = run("cyclegan", "translate", src, "-c", run_dir, "--out", out, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    records = json_lines(res.stdout)
    assert {r["status"] for r in records} == {"ok"} and len(records) == 2
    assert Image.open(out / "nested" / "odd.png").size == (97, 131)
    # again without --overwrite: nothing replaced, exit 6 (every output exists)
    before = (out / "b.png").read_bytes()
    res = run("cyclegan", "translate", src, "-c", run_dir, "--out", out, "--quiet", "--direction", "BtoA")
    assert res.exit_code == 6 and "already exist" in res.stderr
    assert (out / "b.png").read_bytes() == before
    # a bad file among good ones: the good one is written, exit 1
    (src / "bad.png").write_bytes(b"garbage")
    res = run("cyclegan", "translate", src, "-c", run_dir, "--out", tmp_path / "out2", "--quiet")
    assert res.exit_code == 1 and "bad.png" in res.stderr
    assert (tmp_path / "out2" / "b.png").is_file()
    # eval on the shapes run: JSON summary with accuracies, grid written
    res = run("cyclegan", "eval", run_dir, "--limit", 4, "--out", tmp_path / "ev", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json_lines(res.stdout)[0]
    assert 0.0 <= summary["AtoB"]["shape_accuracy"] <= 1.0 and summary["AtoB"]["images"] == 4
    assert json.loads((tmp_path / "ev" / "summary.json").read_text()) == summary
    assert Image.open(tmp_path / "ev" / "grid.png").size[0] > 0


def test_translate_out_may_name_the_output_file(shapes_run, tmp_path):
    run_dir, _ = shapes_run
    Image.new("RGB", (45, 30), "orange").save(tmp_path / "a.jpg")
    Image.new("RGB", (40, 40), "blue").save(tmp_path / "b.png")
    res = run("cyclegan", "translate", tmp_path / "a.jpg", "-c", run_dir, "--out", tmp_path / "res" / "zebra.webp",
              "--quiet")
    assert res.exit_code == 0, res.output
    out = Image.open(tmp_path / "res" / "zebra.webp")
    assert out.format == "WEBP" and out.size == (45, 30)
    assert [p.name for p in (tmp_path / "res").iterdir()] == ["zebra.webp"]
    # several inputs into one file name: a usage error, nothing written
    res = run("cyclegan", "translate", tmp_path / "a.jpg", tmp_path / "b.png", "-c", run_dir, "--out",
              tmp_path / "both.png")
    assert res.exit_code == 2 and "give a folder" in res.stderr and not (tmp_path / "both.png").exists()
    (tmp_path / "notes").write_text("x")
    res = run("cyclegan", "translate", tmp_path / "a.jpg", "-c", run_dir, "--out", tmp_path / "notes")
    assert res.exit_code == 2 and "not a folder" in res.stderr


@pytest.mark.parametrize("args, code, words", [
    (["cyclegan", "translate", "missing.png", "-c", "no_such_run"], 3, "missing.png"),   # inputs first
    (["cyclegan", "translate", "{tmp}", "-c", "{tmp}/no_such_run"], 3, "no input images"),
    (["cyclegan", "translate", "{tmp}/nothing/*.png", "-c", "x"], 3, "no input images"),
    (["cyclegan", "train", "{tmp}/no_dataset", "--run-dir", "{tmp}/r"], 3, "no_dataset"),
    (["cyclegan", "train", "builtin:shapes", "--gan-mode", "wgan", "--run-dir", "{tmp}/r"], 2, "wgan"),
    (["cyclegan", "translate", "x.png", "-c", "run", "--precision", "fp16", "--device", "cpu"], 2, "fp16"),
    (["cyclegan", "translate", "x.png", "-c", "run", "--batch-size", "0"], 2, "batch-size"),
    (["cyclegan", "train", "builtin:shapes", "--log-with", "nosuchtracker", "--run-dir", "{tmp}/r"], 2,
     "not installed"),
])
def test_errors_are_one_line_with_exit_code(tmp_path, args, code, words):
    res = run(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert res.exit_code == code, res.output
    assert words in res.stderr and "Traceback" not in res.output
    assert res.stderr.strip().startswith("error:") and len(res.stderr.strip().splitlines()) == 1


def test_reference_checkpoint_import_and_translate(tmp_path):
    from i2i.cyclegan.config import GeneratorConfig
    from i2i.cyclegan.networks import define_G

    cfg = GeneratorConfig(arch="resnet_6blocks", ngf=8)
    net = define_G(cfg)
    pth = tmp_path / "latest_net_G_A.pth"
    torch.save(net.state_dict(), pth)
    Image.new("RGB", (30, 22), "red").save(tmp_path / "x.png")
    direct = run("cyclegan", "translate", tmp_path / "x.png", "-c", pth, "--net-g", "resnet_6blocks", "--ngf", 8,
                 "--norm", "instance", "--out", tmp_path / "a", "--quiet")
    assert direct.exit_code == 0, direct.output
    res = run("cyclegan", "import", pth, "--out", tmp_path / "G.safetensors", "--net-g", "resnet_6blocks",
              "--ngf", 8, "--quiet")
    assert res.exit_code == 0, res.output
    res = run("cyclegan", "translate", tmp_path / "x.png", "-c", tmp_path / "G.safetensors", "--out",
              tmp_path / "b", "--quiet")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a" / "x.png").read_bytes() == (tmp_path / "b" / "x.png").read_bytes()


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).parent / "i2i"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0 and out.stdout.startswith("i2i ")


def test_folder_dataset_train_and_eval(tmp_path):
    for split in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (34 + 3 * i, 30), ("red", "blue")[i]).save(tmp_path / "data" / split / f"{i}.png")
    (tmp_path / "data" / "testA" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    res = run("cyclegan", "train", tmp_path / "data", "--run-dir", tmp_path / "run", "--max-iters", 2,
              "--ngf", 8, "--ndf", 8, "--crop-size", 32, "--load-size", 32, "--num-workers", 0, "--quiet")
    assert res.exit_code == 0, res.output
    res = run("cyclegan", "eval", tmp_path / "run", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json_lines(res.stdout)[0]
    assert summary["AtoB"]["images"] == 2 and summary["BtoA"]["images"] == 2     # the broken file is skipped
    assert summary["AtoB"]["cycle_l1"] > 0 and summary["AtoB"]["identity_l1"] > 0
    assert "warning: skipping" in res.stderr and "broken.jpg" in res.stderr
    assert (tmp_path / "run" / "eval" / "grid.png").is_file()


def test_export_onnx_cli(shapes_run, tmp_path):
    pytest.importorskip("onnxruntime")
    run_dir, _ = shapes_run
    res = run("cyclegan", "export", "-c", run_dir, "--onnx", tmp_path / "g.onnx", "--size", 32, "--json",
              "--quiet")
    assert res.exit_code == 0, res.output
    info = json_lines(res.stdout)[0]
    assert info["checked"] and info["max_abs_diff"] < 1e-4 and (tmp_path / "g.onnx").stat().st_size > 0
    again = run("cyclegan", "export", "-c", run_dir, "--onnx", tmp_path / "g.onnx", "--size", 32)
    assert again.exit_code == 6


def test_bad_training_arguments_are_clear_errors(tmp_path):
    for d in ("small/trainA", "small/trainB", "empty/trainA", "empty/trainB", "mixed/trainA", "mixed/trainB",
              "thin/trainA", "thin/trainB"):
        (tmp_path / d).mkdir(parents=True)
    for d in ("small/trainA", "small/trainB"):
        for i in range(2):
            Image.new("RGB", (24, 24), "red").save(tmp_path / d / f"{i}.png")
    Image.new("RGB", (40, 40)).save(tmp_path / "empty" / "trainB" / "0.png")
    for i, size in enumerate([(40, 40), (48, 32)]):
        for d in ("mixed/trainA", "mixed/trainB", "thin/trainB"):
            Image.new("RGB", size, "blue").save(tmp_path / d / f"{i}.png")
    Image.new("RGB", (1, 300), "blue").save(tmp_path / "thin" / "trainA" / "0.png")
    tiny = ["--max-iters", 2, "--ngf", 8, "--ndf", 8, "--num-workers", 0, "--quiet"]
    cases = [(["small", "--preprocess", "crop", "--crop-size", 32], 3, "smaller than --crop-size 32"),
             (["empty"], 3, "trainA: contains no images"),
             (["small", "--crop-size", 64, "--load-size", 32], 2, "--crop-size 64 is larger than --load-size 32"),
             (["small", "--crop-size", 16, "--load-size", 20], 2, "need at least 24 px"),
             (["thin", "--preprocess", "none"], 3, "1x300 is too small to train on with --preprocess none"),
             (["mixed", "--preprocess", "none", "--batch-size", 2, "--serial-batches", "--no-flip"], 2,
              "these differ (40x40 and 48x32): a batch of 2 needs one size")]
    for k, (args, code, words) in enumerate(cases):
        res = run("cyclegan", "train", tmp_path / args[0], *args[1:], "--run-dir", tmp_path / f"run{k}", *tiny)
        assert res.exit_code == code, res.output
        assert words in res.stderr and "Traceback" not in res.output


def test_identity_loss_with_unequal_channels_is_refused(tmp_path):
    """The reference asserts input_nc == output_nc when the identity weight is above 0; it was switched off
    silently (idt_A logged as 0)."""
    res = run("cyclegan", "train", "builtin:shapes", "--run-dir", tmp_path / "r", "--input-nc", 1, *TINY)
    assert res.exit_code == EXIT_USAGE and "--lambda-identity 0" in res.stderr, res.output
    assert not (tmp_path / "r").exists()


def test_a_recorded_run_with_unequal_channels_still_resumes(tmp_path):
    """Runs trained before the refusal recorded lambda_identity 0.5 with the loss off: they go on, as they were."""
    for domain in ("trainA", "trainB"):
        (tmp_path / "data" / domain).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(tmp_path / "data" / domain / f"{i}.png")
    run_dir = tmp_path / "r"
    res = run("cyclegan", "train", tmp_path / "data", "--run-dir", run_dir, "--input-nc", 1, "--lambda-identity", 0,
              "--max-iters", 1, *TINY)
    assert res.exit_code == 0, res.output
    config = json.loads((run_dir / "config.json").read_text())
    config["options"]["lambda_identity"] = 0.5                 # what such a run recorded
    (run_dir / "config.json").write_text(json.dumps(config))
    res = run("cyclegan", "train", "--run-dir", run_dir, "--resume", "--max-iters", 2, "--quiet")
    assert res.exit_code == 0 and "identity loss stays off" in res.stderr, res.output


def test_a_second_training_in_a_run_folder_in_use_stops(tmp_path):
    """Two `train` on one --run-dir at once both exited 0, the config of one beside the checkpoints of the other.
    The process training in a folder holds a lock on RUN/.lock; here another process holds it."""
    pytest.importorskip("fcntl")
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.lockf(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(run_dir / ".lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = run("cyclegan", "train", "builtin:shapes", "--run-dir", run_dir, "--max-iters", 1, *TINY)
        assert res.exit_code == 6 and "another process is training in it" in res.stderr, res.output
        assert not (run_dir / "config.json").exists()
    finally:
        holder.communicate("", timeout=60)
    res = run("cyclegan", "train", "builtin:shapes", "--run-dir", run_dir, "--max-iters", 1, *TINY)
    assert res.exit_code == 0, res.output
    res = run("cyclegan", "train", "builtin:shapes", "--run-dir", run_dir, "--resume", "--max-iters", 2, "--quiet")
    assert res.exit_code == 0, res.output
