"""The exit-code table of docs/cli.md, row by row, through the real CLI (tiny runs, a few seconds in all).

Also: output-exists checks come before any model is loaded (translate, eval).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.errors import (EXIT_CHECKPOINT, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_NUMERICAL, EXIT_OK,
                        EXIT_OUTPUT, EXIT_PARTIAL, EXIT_USAGE)

TINY = ["--ngf", "8", "--ndf", "8", "--shapes-count", "8", "--batch-size", "2", "--num-workers", "0", "--quiet"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def images(tmp_path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (32, 32), "red").save(src / "a.png")
    Image.new("RGB", (36, 28), "blue").save(src / "b.png")
    return src


def _no_model_load(monkeypatch) -> None:
    """Make loading a generator fail loudly, to prove a command stopped before it."""
    import i2i.cli.cyclegan as cli
    import i2i.cyclegan.evaluate as evaluate

    def boom(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(cli, "_load_any_generator", boom)
    monkeypatch.setattr(evaluate, "load_generator", boom)


def test_0_success(tiny_run, images, tmp_path):
    res = run("cyclegan", "translate", images, "-c", tiny_run, "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == EXIT_OK, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


def test_1_partial_failure_writes_the_rest(tiny_run, images, tmp_path):
    (images / "bad.png").write_bytes(b"not an image")
    res = run("cyclegan", "translate", images, "-c", tiny_run, "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == EXIT_PARTIAL and "bad.png" in res.stderr
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "b.png").is_file()


def test_1_when_only_some_outputs_exist(tiny_run, images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (4, 4)).save(out / "a.png")
    res = run("cyclegan", "translate", images, "-c", tiny_run, "--out", out, "--quiet")
    assert res.exit_code == EXIT_PARTIAL and "already exists" in res.stderr
    assert Image.open(out / "a.png").size == (4, 4) and (out / "b.png").is_file()


@pytest.mark.parametrize("args", [
    ["cyclegan", "train", "builtin:shapes", "--gan-mode", "wgan"],     # invalid value (i2i's check)
    ["cyclegan", "train", "builtin:shapes", "--lr", "nan"],
    ["cyclegan", "train", "builtin:shapes", "--max-dataset-size", "0"],
    ["cyclegan", "translate", "x.png"],                                 # required option missing (Typer)
    ["cyclegan", "import", "x.pth", "--no-such-flag"],                  # unknown flag (Typer)
])
def test_2_usage(args):
    assert run(*args).exit_code == EXIT_USAGE


def test_3_input(tiny_run, tmp_path):
    res = run("cyclegan", "translate", tmp_path / "missing.png", "-c", tiny_run, "--out", tmp_path / "o")
    assert res.exit_code == EXIT_INPUT and "missing.png" in res.stderr


@pytest.mark.parametrize("command", ["translate", "freecontrol", "ctrlx", "preprocess"])
def test_3_the_only_input_unreadable_in_every_command(tiny_run, tmp_path, command):
    """An unreadable image as the only input is an input error everywhere (not a partial failure: nothing else
    was written); the diffusion commands stop before loading any model."""
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    args = {"translate": ["cyclegan", "translate", bad, "-c", tiny_run],
            "freecontrol": ["freecontrol", "--prompt", "a red square", "--condition", bad],
            "ctrlx": ["ctrlx", "--prompt", "a red square", "--structure", bad],
            "preprocess": ["preprocess", bad, "--kind", "canny"]}[command]
    res = run(*args, "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == EXIT_INPUT and "bad.png" in res.stderr, res.output
    assert res.stderr.count("bad.png") == 1, res.stderr                # said once, not as item and as exit
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())



@pytest.mark.parametrize("command", ["translate", "preprocess"])
def test_3_when_every_input_of_a_batch_is_unreadable(tiny_run, tmp_path, command):
    """Nothing written and every input failed the same way: that failure's code, not the partial failure's 1."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.png", "b.png"):
        (src / name).write_bytes(b"not an image")
    args = {"translate": ["cyclegan", "translate", src, "-c", tiny_run],
            "preprocess": ["preprocess", src, "--kind", "canny"]}[command]
    res = run(*args, "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == EXIT_INPUT and "2 of 2 input(s) failed" in res.stderr, res.output
    assert "a.png" in res.stderr and "b.png" in res.stderr

def test_4_checkpoint(images, tmp_path):
    res = run("cyclegan", "translate", images, "-c", tmp_path / "no_run", "--out", tmp_path / "o")
    assert res.exit_code == EXIT_CHECKPOINT and "no_run" in res.stderr


def test_5_numerical(tiny_run, tmp_path, monkeypatch):
    import i2i.cyclegan.methods.cyclegan as trainer

    real = trainer.gan_loss
    monkeypatch.setattr(trainer, "gan_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    res = run("cyclegan", "train", "builtin:shapes", "--run-dir", tmp_path / "nan", "--max-iters", 2, *TINY)
    assert res.exit_code == EXIT_NUMERICAL and "NaN" in res.stderr


def test_6_translate_every_output_exists_before_model_load(tiny_run, images, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run("cyclegan", "translate", images, "-c", tiny_run, "--out", out, "--quiet").exit_code == EXIT_OK
    before = (out / "a.png").read_bytes()
    _no_model_load(monkeypatch)
    res = run("cyclegan", "translate", images, "-c", tiny_run, "--out", out)
    assert res.exit_code == EXIT_OUTPUT, res.output
    assert "already exist" in res.stderr and "--overwrite" in res.stderr
    assert (out / "a.png").read_bytes() == before


def test_6_eval_twice_refuses_before_any_work(tiny_run, tmp_path, monkeypatch):
    target = tmp_path / "ev"
    res = run("cyclegan", "eval", tiny_run, "--limit", 2, "--out", target, "--quiet")
    assert res.exit_code == EXIT_OK, res.output
    _no_model_load(monkeypatch)
    res = run("cyclegan", "eval", tiny_run, "--limit", 2, "--out", target)
    assert res.exit_code == EXIT_OUTPUT and "--overwrite" in res.stderr, res.output
    monkeypatch.undo()
    assert run("cyclegan", "eval", tiny_run, "--limit", 2, "--out", target, "--overwrite",
               "--quiet").exit_code == EXIT_OK


def test_2_before_6_eval_metrics_on_builtin_shapes(tiny_run, tmp_path, monkeypatch):
    """The usage error comes first even when the output already exists (fixing the output would not help)."""
    target = tmp_path / "ev"
    target.mkdir()
    (target / "summary.json").write_text("{}")
    _no_model_load(monkeypatch)
    res = run("cyclegan", "eval", tiny_run, "--metrics", "fid", "--out", target)
    assert res.exit_code == EXIT_USAGE and "image-folder dataset" in res.stderr, res.output


def test_6_train_into_an_existing_run(tiny_run):
    res = run("cyclegan", "train", "builtin:shapes", "--run-dir", tiny_run, "--max-iters", 2, *TINY)
    assert res.exit_code == EXIT_OUTPUT and "--resume" in res.stderr


def test_70_internal_error_is_one_line(tiny_run, images, tmp_path, monkeypatch):
    import i2i.cyclegan.translator as translator

    def bug(*args, **kwargs):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(translator, "translate_images", bug)
    res = run("cyclegan", "translate", images, "-c", tiny_run, "--out", tmp_path / "o")
    assert res.exit_code == EXIT_INTERNAL
    assert "internal error" in res.stderr and "--debug" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize("failure", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 40000000000 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError(),
])
def test_2_out_of_memory_is_not_a_bug(tiny_run, images, tmp_path, monkeypatch, failure):
    import i2i.cyclegan.translator as translator

    def allocate(*args, **kwargs):
        raise failure

    monkeypatch.setattr(translator, "translate_images", allocate)
    res = run("cyclegan", "translate", images, "-c", tiny_run, "--out", tmp_path / "o")
    assert res.exit_code == EXIT_USAGE, res.output
    assert "out of memory" in res.stderr and "smaller image size" in res.stderr and "internal error" not in res.stderr


@pytest.mark.parametrize("args, message", [
    (["--suffix", "/../../evil"], "--suffix"),
    (["--ext", "../x.png"], "--ext"),
])
def test_2_names_cannot_leave_the_output_folder(tiny_run, images, tmp_path, args, message):
    res = run("cyclegan", "translate", images, "-c", tiny_run, "--out", tmp_path / "o", *args)
    assert res.exit_code == EXIT_USAGE and message in res.stderr and "path separator" in res.stderr
    assert not (tmp_path / "evil.png").exists() and not list(tmp_path.rglob("*evil*"))


def test_2_unknown_output_format_before_the_model_loads(images, tmp_path, monkeypatch):
    _no_model_load(monkeypatch)
    res = run("cyclegan", "translate", images, "-c", tmp_path / "any", "--out", tmp_path / "o", "--ext", ".xyz")
    assert res.exit_code == EXIT_USAGE and "--ext '.xyz': not an image format" in res.stderr, res.output


def test_2_eval_limit_below_one(tiny_run, tmp_path, monkeypatch):
    _no_model_load(monkeypatch)
    for limit in (0, -3):
        res = run("cyclegan", "eval", tiny_run, "--limit", limit, "--out", tmp_path / f"e{limit}")
        assert res.exit_code == EXIT_USAGE and "--limit must be at least 1" in res.stderr
        assert not (tmp_path / f"e{limit}").exists()


def test_one_output_file_keeps_every_dot_of_its_name(tiny_run, images, tmp_path):
    res = run("cyclegan", "translate", images / "a.png", "-c", tiny_run, "--out", tmp_path / "x.out.png", "--quiet")
    assert res.exit_code == EXIT_OK, res.output
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["x.out.png"]


def test_130_interrupted(tiny_run, images, tmp_path, monkeypatch):
    """Ctrl-C outside training (training's own SIGINT/SIGTERM path is tests/test_interrupt.py)."""
    import i2i.cyclegan.translator as translator

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(translator, "translate_images", interrupt)
    res = run("cyclegan", "translate", images, "-c", tiny_run, "--out", tmp_path / "o")
    assert res.exit_code == EXIT_INTERRUPTED and "interrupted" in res.stderr


def test_6_eval_into_a_file_or_a_folder_it_cannot_make(tiny_run, tmp_path):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        res = run("cyclegan", "eval", tiny_run, "--out", out)
        assert res.exit_code == EXIT_OUTPUT and "is a file" in res.stderr, res.output
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("command", ["translate", "preprocess"])
def test_2_an_output_never_replaces_its_input(tiny_run, images, command):
    before = (images / "a.png").read_bytes()
    args = {"translate": ["cyclegan", "translate", images / "a.png", "-c", tiny_run],
            "preprocess": ["preprocess", images / "a.png", "--kind", "canny"]}[command]
    for out in (images / "a.png", images):                 # the file itself, or its own folder as the output folder
        res = run(*args, "--out", out, "--overwrite")
        assert res.exit_code == EXIT_USAGE and "is an input" in res.stderr, res.output
    assert (images / "a.png").read_bytes() == before
