"""Best checkpoint while training (--eval-every): KID logged, checkpoints/best kept and resumable, --best."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from i2i.cyclegan.checkpoint import best_checkpoint, resolve_generator_file
from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.trainer import resolve_config, train
from i2i.errors import CheckpointError, UsageError
from test_trainer import tiny_config, weights

EVAL = dict(eval_every=2, eval_features="random-cnn", eval_images=8)


def small(run_dir: Path, **kw):
    return tiny_config(run_dir, **{"generator": GeneratorConfig(arch="resnet_6blocks", ngf=4), **EVAL, **kw})


def eval_lines(run: Path) -> list[dict]:
    return [without_time(r) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
            if r.get("hook") == "eval"]


def without_time(record: dict) -> dict:
    assert record["seconds"] >= 0
    return {k: v for k, v in record.items() if k != "seconds"}


def best_weights(run: Path) -> dict[str, torch.Tensor]:
    return {f"{n}/{k}": v for n in ("G_A", "G_B") for k, v in
            load_file(str(run / "checkpoints" / "best" / f"{n}.safetensors")).items()}


def info(run: Path) -> dict:
    return without_time(json.loads((run / "checkpoints" / "best" / "info.json").read_text()))


def test_eval_logs_kid_and_keeps_the_lowest_as_best(tmp_path):
    run = tmp_path / "run"
    train(small(run, max_iters=8, keep_checkpoints=1, save_every=2))
    lines = eval_lines(run)
    assert [r["iter"] for r in lines] == [2, 4, 6, 8]
    assert all("random-cnn" in r["features"] and "not Inception" in r["features"] for r in lines)
    lowest = min(lines, key=lambda r: r["kid"])
    assert lines[-1]["best_kid"] == lowest["kid"] and lines[-1]["best_iter"] == lowest["iter"]
    best = info(run)
    assert best["iter"] == lowest["iter"] and best["kid"] == lowest["kid"]
    assert best["held_out"] == "8 unseen shapes (seed 0)"
    # pruning keeps one iter_* folder, never best; best holds weights only (not resumable by itself)
    assert sorted(p.name for p in (run / "checkpoints").glob("iter_*")) == ["iter_00000008"]
    assert not (run / "checkpoints" / "best" / "train_state.json").exists()
    assert best_checkpoint(run) == run / "checkpoints" / "best"
    assert resolve_generator_file(run, "BtoA", best=True) == run / "checkpoints" / "best" / "G_B.safetensors"
    # the run's checkpoints/ folder means the run (its latest, or its best)
    latest = run / "checkpoints" / "iter_00000008" / "G_A.safetensors"
    assert resolve_generator_file(run / "checkpoints") == resolve_generator_file(run) == latest
    assert resolve_generator_file(run / "checkpoints", best=True).parent == run / "checkpoints" / "best"


def test_resume_with_eval_is_exact(tmp_path):
    """Stop at 5, resume to 12 with evaluation every 2 == an uninterrupted run: same weights, same best; and
    evaluating changes nothing in training (same weights as a run without it; dropout draws from the global RNG,
    so an evaluation that moved it would show)."""
    drop = GeneratorConfig(arch="resnet_6blocks", ngf=4, dropout=True)
    full = train(small(tmp_path / "full", max_iters=12, generator=drop))
    train(small(tmp_path / "split", max_iters=5, generator=drop))
    resumed = train(resolve_config(small(tmp_path / "split", max_iters=12, generator=drop), True, {"max_iters"}),
                    resume=True)
    plain = train(small(tmp_path / "plain", max_iters=12, generator=drop, eval_every=0))
    a, b, c = weights(full.checkpoint), weights(resumed.checkpoint), weights(plain.checkpoint)
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]), k
    wa, wb = best_weights(tmp_path / "full"), best_weights(tmp_path / "split")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert info(tmp_path / "full") == info(tmp_path / "split")
    assert eval_lines(tmp_path / "full") == eval_lines(tmp_path / "split")


def test_best_kid_so_far_survives_resume(tmp_path):
    """A resumed run compares with the best recorded before the interruption, not with a fresh start."""
    run = tmp_path / "run"
    train(small(run, max_iters=4))
    path = run / "checkpoints" / "best" / "info.json"
    record = {**json.loads(path.read_text()), "kid": -1.0, "best_kid": -1.0}          # unbeatable
    path.write_text(json.dumps(record))
    before = best_weights(run)
    train(resolve_config(small(run, max_iters=8), True, {"max_iters"}), resume=True)
    assert json.loads(path.read_text()) == record
    assert all(torch.equal(before[k], v) for k, v in best_weights(run).items())
    assert [r["best_iter"] for r in eval_lines(run)][-2:] == [record["iter"]] * 2


def test_overwrite_starts_a_fresh_best(tmp_path):
    run = tmp_path / "run"
    train(small(run, max_iters=2))
    path = run / "checkpoints" / "best" / "info.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "kid": -1.0}))
    train(small(run, max_iters=2), overwrite=True)
    assert info(run)["kid"] > -1.0


def test_missing_inception_weights_fail_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("I2I_INCEPTION_WEIGHTS", raising=False)
    run = tmp_path / "run"
    with pytest.raises(CheckpointError, match="Inception"):
        train(small(run, max_iters=2, eval_features="inception"))
    assert not (run / "log.jsonl").exists() and not (run / "checkpoints").exists()


def test_held_out_folders_test_else_train(tmp_path):
    from i2i.cyclegan.best import held_out_set

    root = tmp_path / "data"
    for d in ("trainA", "trainB", "testA", "testB"):
        (root / d).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (40, 30), (i * 40, 100 if "A" in d else 200, 0)).save(root / d / f"{i}.png")
    cfg = small(tmp_path / "run", dataroot=str(root), eval_images=5)
    first, again = held_out_set(cfg), held_out_set(cfg)
    assert first.source.shape == (5, 3, 32, 32) and first.target.shape == (5, 3, 32, 32)
    assert torch.equal(first.source, again.source) and "testA/testB" in first.description
    for d in ("testA", "testB"):
        for f in (root / d).iterdir():
            f.unlink()
        (root / d).rmdir()
    assert "training images, not held out" in held_out_set(cfg).description


def i2i(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "i2i", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_cli_best_for_translate_and_eval(tmp_path):
    run, plain = tmp_path / "run", tmp_path / "plain"
    common = ["--ngf", 4, "--ndf", 4, "--shapes-count", 8, "--batch-size", 2, "--num-workers", 0, "--quiet"]
    done = i2i("cyclegan", "train", "--run-dir", run, "--max-iters", 4, "--eval-every", 2, "--eval-features",
               "random-cnn", "--eval-images", 8, *common)
    assert done.returncode == 0, done.stderr
    assert "random-cnn" in done.stderr and "not Inception" in done.stderr
    img = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(img)
    ok = i2i("cyclegan", "translate", img, "-c", run, "--best", "-o", tmp_path / "out.png")
    assert ok.returncode == 0, ok.stderr
    ev = i2i("cyclegan", "eval", run, "--best", "--limit", 4, "--json", "--quiet")
    assert ev.returncode == 0, ev.stderr
    summary = json.loads(ev.stdout)
    assert summary["checkpoint"] == str(run / "checkpoints" / "best")
    assert summary["best"]["iter"] == info(run)["iter"]
    assert (run / "eval-best" / "summary.json").is_file()
    assert i2i("cyclegan", "train", "--run-dir", plain, "--max-iters", 2, *common).returncode == 0
    for cmd in (["translate", img, "-c", plain, "--best", "-o", tmp_path / "o2.png"], ["eval", plain, "--best"]):
        bad = i2i("cyclegan", *cmd)
        assert bad.returncode == 2 and "--eval-every" in bad.stderr, bad.stderr
    with pytest.raises(UsageError):
        resolve_generator_file(img, best=True)


def test_resume_may_turn_evaluation_on_but_not_change_what_best_was_chosen_by(tmp_path):
    run = tmp_path / "run"
    train(small(run, max_iters=2, eval_every=0))
    assert not (run / "checkpoints" / "best").exists()
    changes = {"max_iters", "eval_every", "eval_images", "eval_features"}
    train(resolve_config(small(run, max_iters=4, eval_images=6), True, changes), resume=True)
    assert info(run)["iter"] == 4 and info(run)["held_out"] == "6 unseen shapes (seed 0)"
    with pytest.raises(UsageError, match="--eval-images"):
        train(resolve_config(small(run, max_iters=6, eval_images=8), True, changes), resume=True)


def test_eval_numbers_go_to_the_tracker(tmp_path, monkeypatch):
    import i2i.cyclegan.loop as loop

    logged, real = [], loop.make_accelerator

    def no_tracker_package(**kwargs):            # a real accelerator whose tracker calls are recorded
        accelerator = real(**{**kwargs, "log_with": None})
        accelerator.init_trackers = lambda *a, **k: None
        accelerator.log = lambda values, step=None: logged.append((step, values))
        accelerator.end_training = lambda: None
        return accelerator

    monkeypatch.setattr(loop, "make_accelerator", no_tracker_package)
    train(small(tmp_path / "run", max_iters=4, log_with="tensorboard"))
    evals = [(step, values) for step, values in logged if "eval/kid" in values]
    assert [step for step, _ in evals] == [2, 4]
    assert {"eval/kid", "eval/kid_std", "eval/best_kid", "eval/best_iter"} <= set(evals[0][1])
    assert all(isinstance(v, (int, float)) for _, values in evals for v in values.values())


def test_eval_table_names_the_best_checkpoint():
    from rich.console import Console

    from i2i.cli.eval_table import print_eval_table
    from i2i.progress import Reporter

    console = Console(record=True, width=120)
    print_eval_table({"best": {"iter": 100}, "AtoB": {"images": 3, "kid": 0.1, "kid_std": 0.01}},
                     Reporter(console=console))
    assert "checkpoint: best (iteration 100)" in " ".join(console.export_text().split())   # title may wrap
