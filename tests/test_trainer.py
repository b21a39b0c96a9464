"""Training: the loss goes down, resume is exact, runs are never silently overwritten, NaN stops cleanly."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.cyclegan.config import DiscriminatorConfig, GeneratorConfig, TrainConfig
from i2i.cyclegan.methods.cyclegan import CycleGAN
from i2i.cyclegan.trainer import resolve_config, train
from i2i.errors import CheckpointError, NumericalError, OutputError, UsageError


def tiny_config(run_dir: Path, **kw) -> TrainConfig:
    base = TrainConfig(dataroot="builtin:shapes", run_dir=str(run_dir),
                       generator=GeneratorConfig(arch="resnet_6blocks", ngf=8),
                       discriminator=DiscriminatorConfig(ndf=8), load_size=32, crop_size=32, preprocess="none",
                       n_epochs=1, n_epochs_decay=1, shapes_count=16, batch_size=2, num_workers=0,
                       log_every=2, sample_every=4, save_every=3, save_epoch_every=1, options={"pool_size": 4}, lr=1e-3)
    return dataclasses.replace(base, **kw)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("G_A", "G_B", "D_A", "D_B", "train_state"):
        out.update({f"{name}/{k}": v for k, v in load_file(str(folder / f"{name}.safetensors")).items()})
    return out


def test_cycle_loss_goes_down(tmp_path):
    cfg = tiny_config(tmp_path / "run", shapes_count=64, n_epochs=2, n_epochs_decay=0, log_every=8,
                      max_iters=64, sample_every=1000, save_every=1000,
                      options={"pool_size": 4, "lambda_identity": 0.0})
    result = train(cfg)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    first, last = log[0], log[-1]
    assert last["cycle_A"] < 0.6 * first["cycle_A"]
    assert last["cycle_B"] < 0.6 * first["cycle_B"]
    assert result.iterations == 64


def test_bf16_losses_track_the_fp32_run(tmp_path):
    logs = {}
    for precision in ("fp32", "bf16"):
        cfg = tiny_config(tmp_path / precision, shapes_count=64, n_epochs=2, n_epochs_decay=0, log_every=16,
                          max_iters=64, sample_every=1000, save_every=1000, precision=precision)
        train(cfg, device="cpu")
        logs[precision] = [json.loads(line) for line in
                           (tmp_path / precision / "log.jsonl").read_text().splitlines()]
    assert len(logs["fp32"]) == len(logs["bf16"]) == 4
    gaps = [abs(b[n] - a[n]) / a[n] for a, b in zip(logs["fp32"], logs["bf16"]) for n in ("cycle_A", "cycle_B")]
    assert max(gaps) < 0.15, gaps                 # same seed and data order: only the rounding differs
    assert logs["bf16"][-1]["cycle_A"] < 0.6 * logs["bf16"][0]["cycle_A"]


def test_run_folder_layout(tmp_path):
    run = tmp_path / "run"
    result = train(tiny_config(run, max_iters=8))
    assert (run / "config.json").is_file()
    latest = (run / "latest").read_text().strip()
    assert latest == "checkpoints/iter_00000008" and result.checkpoint == run / latest
    assert (run / "samples" / "iter_00000004.png").is_file()
    assert (run / "checkpoints" / "epoch_0001" / "G_A.safetensors").is_file()   # 8 iterations = 1 epoch
    # keep_checkpoints=2: older iteration checkpoints are pruned
    assert len(list((run / "checkpoints").glob("iter_*"))) <= 2
    assert not list((run / "checkpoints").glob(".*"))


@pytest.mark.parametrize("memory_format", ["auto", "channels_last"])
def test_resume_is_exact(tmp_path, memory_format):
    """Stop at iteration 5 (mid-epoch 1) and resume to 12 (into epoch 2) == an uninterrupted run to 12."""
    full = train(tiny_config(tmp_path / "full", max_iters=12, memory_format=memory_format))
    train(tiny_config(tmp_path / "split", max_iters=5, memory_format=memory_format))
    cfg2 = resolve_config(tiny_config(tmp_path / "split", max_iters=12, memory_format=memory_format),
                          resume=True, overrides={"max_iters"})
    resumed = train(cfg2, resume=True)
    assert resumed.iterations == full.iterations == 12
    a, b = weights(full.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_existing_run_not_overwritten(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(run, max_iters=2))
    before = (run / "latest").read_text()
    with pytest.raises(OutputError):
        train(tiny_config(run, max_iters=2))
    assert (run / "latest").read_text() == before
    train(tiny_config(run, max_iters=2), overwrite=True)


def test_resume_refuses_architecture_change(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(run, max_iters=2))
    changed = tiny_config(run, generator=GeneratorConfig(arch="resnet_9blocks", ngf=8))
    with pytest.raises(UsageError):
        resolve_config(changed, resume=True, overrides={"generator"})
    with pytest.raises(CheckpointError):
        resolve_config(tiny_config(tmp_path / "none"), resume=True, overrides=set())


def test_overwrite_starts_a_clean_run_folder(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(run, max_iters=6, save_every=2, keep_checkpoints=3))      # iter 2, 4, 6 and the end
    (run / "eval").mkdir()
    (run / "eval" / "summary.json").write_text("{}")
    (run / "notes.txt").write_text("mine")                                     # not the run's: kept
    with pytest.raises(UsageError, match="give one"):
        train(tiny_config(run, max_iters=2), resume=True, overwrite=True)
    train(tiny_config(run, max_iters=4, save_every=2, keep_checkpoints=2), overwrite=True)
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["iter_00000002", "iter_00000004"], kept                   # the new run's, none of the old
    assert not (run / "eval").exists() and (run / "notes.txt").read_text() == "mine"
    assert [json.loads(line)["iter"] for line in (run / "log.jsonl").read_text().splitlines()] == [2, 4]
    assert not list(run.glob(".overwritten-*"))                                # the old run is gone once saved


def test_an_overwrite_that_fails_before_its_first_checkpoint_keeps_the_old_run(tmp_path, monkeypatch):
    from i2i.cyclegan.methods.cyclegan import CycleGAN

    run = tmp_path / "run"
    train(tiny_config(run, max_iters=4, save_every=2))
    before = {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}

    def broken(self, real_A, real_B):
        raise RuntimeError("the new run broke at its first step")

    monkeypatch.setattr(CycleGAN, "step", broken)
    with pytest.raises(RuntimeError, match="broke"):
        train(tiny_config(run, max_iters=4, save_every=2, lr=1e-3), overwrite=True)
    after = {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before                                                     # config, checkpoints, log, samples


def _files(run):
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def _kill_while_setting_aside(run, moved, prefix=".overwritten-", host=None):
    """What ``kill -9`` of a start with --overwrite leaves: ``moved`` outputs in a folder of a dead process."""
    import os
    import socket

    folder = run / f"{prefix}{host or socket.gethostname()}-{2 ** 22 + 12345}"     # above any Linux PID
    folder.mkdir()
    for name in moved:
        os.replace(run / name, folder / name)
    return folder


def test_a_killed_overwrite_start_leaves_the_old_run_to_be_put_back(tmp_path):
    from i2i.cyclegan.run_aside import RUN_OUTPUTS

    run = tmp_path / "run"
    train(tiny_config(run, max_iters=4, save_every=2))
    before = _files(run)
    dead = _kill_while_setting_aside(run, [n for n in RUN_OUTPUTS if (run / n).exists()])
    (run / "config.json").write_text(json.dumps(tiny_config(run, lr=1e-3).to_dict()))     # the dead start's
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "x.png")
    res = CliRunner().invoke(app, ["cyclegan", "translate", str(tmp_path / "x.png"), "-c", str(run), "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 4 and "--resume` puts it back" in res.output           # read-only: only a hint
    assert dead.is_dir()
    with pytest.warns(UserWarning, match="put back"):
        with pytest.raises(OutputError, match="already holds a run"):      # not a silent fresh start over it
            train(tiny_config(run, max_iters=2))
    assert _files(run) == before and not dead.exists()


def test_a_start_killed_while_moving_the_old_run_aside_loses_nothing(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(run, max_iters=4, save_every=2))
    before = _files(run)
    _kill_while_setting_aside(run, ["checkpoints", "samples"], prefix=".overwriting-")   # latest, log, config left
    with pytest.warns(UserWarning, match="put back"):
        with pytest.raises(OutputError, match="already holds a run"):
            train(tiny_config(run, max_iters=2))
    assert _files(run) == before


def test_a_run_set_aside_on_another_host_is_not_started_over_blindly(tmp_path):
    from i2i.cyclegan.run_aside import RUN_OUTPUTS

    run = tmp_path / "run"
    train(tiny_config(run, max_iters=2, save_every=2))
    elsewhere = _kill_while_setting_aside(run, [n for n in RUN_OUTPUTS if (run / n).exists()], host="node-7")
    with pytest.raises(OutputError, match="on another host"):
        train(tiny_config(run, max_iters=2))
    assert elsewhere.is_dir() and (elsewhere / "checkpoints").is_dir()


def test_resume_refuses_a_dataset_whose_image_counts_changed(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    for domain, n in (("trainA", 5), ("trainB", 8)):
        (data / domain).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (30 * i, 100, 200 if domain == "trainA" else 0)).save(data / domain / f"{i}.png")
    run = tmp_path / "run"
    config = tiny_config(run, dataroot=str(data), max_iters=2, save_every=2)
    train(config)
    (data / "trainA" / "0.png").unlink()                 # the smaller domain: iterations per epoch do not change
    with pytest.raises(CheckpointError, match=r"the dataset changed since the checkpoint \(A: 5 -> 4 images\)"):
        train(dataclasses.replace(config, max_iters=4), resume=True)


def test_a_lost_latest_pointer_falls_back_to_the_newest_complete_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(run, max_iters=4, save_every=2))
    newest = (run / "latest").read_text().strip()
    (run / "latest").unlink()
    with pytest.raises(OutputError, match="already holds a run"):              # not taken for an empty folder
        train(tiny_config(run, max_iters=4))
    cfg = resolve_config(tiny_config(run, max_iters=6), resume=True, overrides={"max_iters"})
    assert train(cfg, resume=True).start_iteration == int(newest.split("_")[-1])


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    import i2i.cyclegan.methods.cyclegan as trainer

    run = tmp_path / "run"
    train(tiny_config(run, max_iters=3))
    good = (run / "latest").read_text()
    real_gan_loss = trainer.gan_loss
    monkeypatch.setattr(trainer, "gan_loss", lambda *a, **k: real_gan_loss(*a, **k) * float("nan"))
    cfg = resolve_config(tiny_config(run, max_iters=20), resume=True, overrides={"max_iters"})
    with pytest.raises(NumericalError, match="NaN.*the last good checkpoint is kept"):
        train(cfg, resume=True)
    assert (run / "latest").read_text() == good
    assert (run / good.strip() / "G_A.safetensors").is_file()
    with pytest.raises(NumericalError, match="no checkpoint had been saved yet"):   # a fresh run: nothing kept
        train(tiny_config(tmp_path / "fresh", max_iters=3))


def test_bad_config_values():
    with pytest.raises(UsageError):
        TrainConfig(batch_size=0)
    with pytest.raises(UsageError):
        CycleGAN.options_from({"lambda_A": -1})
    with pytest.raises(UsageError):
        TrainConfig(crop_size=300, load_size=286)


def test_memory_format_choice(tmp_path):
    from i2i.device import use_channels_last

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not use_channels_last(cpu) and use_channels_last(cuda)
    assert use_channels_last(cpu, "channels_last") and not use_channels_last(cuda, "contiguous")
    with pytest.raises(UsageError, match="--memory-format"):
        tiny_config(tmp_path / "run", memory_format="nhwc")


def test_batch_norm_running_statistics_move_in_the_reference_call_order():
    """With --norm batch every generator call updates the running statistics (a moving average, so the order of
    the batches matters): after one step they must be those of the reference's order, G_A(A), G_B(G_A(A)), G_B(B),
    G_A(G_B(B)), then the identity calls G_A(B), G_B(A)."""
    import copy

    from i2i.cyclegan.context import StepContext

    cfg = TrainConfig(generator=GeneratorConfig(arch="resnet_1blocks", ngf=4, norm="batch"),
                      discriminator=DiscriminatorConfig(ndf=4, norm="batch"), options={"pool_size": 0})
    torch.manual_seed(0)
    method = CycleGAN(cfg, StepContext.for_run(torch.device("cpu"), "fp32", "contiguous"))
    G_A, G_B = copy.deepcopy(method.G_A), copy.deepcopy(method.G_B)
    real_A, real_B = torch.rand(2, 3, 24, 24) * 2 - 1, torch.rand(2, 3, 24, 24) * 2 - 1
    method.step(real_A, real_B)
    with torch.no_grad():                       # the same weights, called in the reference's order
        G_B(G_A(real_A))
        G_A(G_B(real_B))
        G_A(real_B)
        G_B(real_A)
    for mine, replayed in ((method.G_A, G_A), (method.G_B, G_B)):
        buffers = dict(replayed.named_buffers())
        for name, value in mine.named_buffers():
            torch.testing.assert_close(value, buffers[name], msg=name)
