"""A new method is one module + one registration: the docs' example method (examples/toy_method.py) gets its own
typed flag in --help and in the saved config, trains in the one loop, and runs in fp16 with channels_last through
the step context (the method itself never touches autocast or the loss scaler)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.cyclegan import methods
from i2i.cyclegan.context import StepContext
from i2i.cyclegan.run_config import default_config, merge_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.setitem(methods.REGISTRY, "onesided", "toy_method:OneSided")
    yield methods.get_method("onesided")
    sys.modules.pop("toy_method", None)


def test_toy_method_flag_in_help_and_in_saved_config(toy, tmp_path):
    res = CliRunner().invoke(app, ["cyclegan", "train", "--model", "onesided", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if "--lambda-idt" in ln)
    assert "<float>" in line and "[default: 5.0]" in line and "One-sided GAN" in res.output
    assert "--lambda-nce" not in res.output and "--lambda-a" not in res.output   # other methods' flags: not here

    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["cyclegan", "train", "--model", "onesided", "--lambda-idt", "2.5", "--run-dir",
                                   str(run), "--max-iters", "2", "--shapes-count", "8", "--ngf", "8", "--ndf", "8",
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"] == "onesided" and saved["options"] == {"lambda_idt": 2.5}
    log = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    assert set(toy.loss_names) <= set(log[-1]) and log[-1]["iter"] == 2
    assert (run / "checkpoints" / "iter_00000002" / "G_A.safetensors").is_file()


class CountingScaler(torch.amp.GradScaler):
    """A real, enabled GradScaler that counts its calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = {"scale": 0, "step": 0, "update": 0}

    def scale(self, outputs):
        self.calls["scale"] += 1
        return super().scale(outputs)

    def step(self, optimizer, *args, **kwargs):
        self.calls["step"] += 1
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale=None):
        self.calls["update"] += 1
        return super().update(new_scale)


def _fp16_steps(toy, init_scale: float, steps: int = 3):
    config = merge_config(default_config("onesided", shapes=True),
                          {"generator": {"ngf": 8}, "discriminator": {"ndf": 8}, "batch_size": 2})
    torch.manual_seed(0)
    scaler = CountingScaler("cpu", init_scale=init_scale)
    ctx = StepContext(torch.device("cpu"), "fp16", torch.channels_last, scaler)
    method = toy(config, ctx)
    before = [p.detach().clone() for p in method.G.parameters()]
    real_A = (torch.rand(2, 3, 32, 32) * 2 - 1).contiguous(memory_format=torch.channels_last)
    real_B = (torch.rand(2, 3, 32, 32) * 2 - 1).contiguous(memory_format=torch.channels_last)
    for _ in range(steps):
        losses = method.step(real_A, real_B)
        ctx.end_step()
    changed = any(not torch.equal(a, b) for a, b in zip(before, method.G.parameters()))
    return method, scaler, losses, changed


def test_toy_method_runs_in_fp16_with_the_scaler_and_channels_last(toy):
    """The loop refuses fp16 on a CPU (CUDA only), so the step context is built here as the loop builds it on
    CUDA: fp16 autocast (which torch also runs on a CPU) and an enabled GradScaler."""
    method, scaler, losses, changed = _fp16_steps(toy, init_scale=1.0)
    convs = [m for m in method.G.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert torch.isfinite(losses).all() and changed
    assert scaler.calls == {"scale": 6, "step": 6, "update": 3}          # two optimisations a step, one update
    assert method.sample_rows()[0][1].dtype == torch.float16             # G ran under fp16 autocast
    assert scaler.get_scale() == 1.0                                     # no overflow: every step was taken
    # a loss scale that overflows fp16 gradients: the scaler skips those steps and backs off, as on a GPU
    _, scaler, _, changed = _fp16_steps(toy, init_scale=2.0 ** 24)
    assert scaler.get_scale() < 2.0 ** 24 and scaler.calls["update"] == 3


def test_no_method_touches_autocast_or_the_scaler():
    for path in (ROOT / "i2i" / "cyclegan" / "methods").glob("*.py"):
        assert not re.search(r"autocast|scaler", path.read_text()), path


def test_docs_example_is_the_tested_file():
    """docs/cut.md shows examples/toy_method.py as it is (this test keeps the two the same)."""
    docs = (ROOT / "docs" / "cut.md").read_text()
    source = (ROOT / "examples" / "toy_method.py").read_text()
    body = source[source.index("from __future__"):]
    assert body.strip() in docs
