"""Crashes and faults during training and saving: kill -9 at any moment, a full disk, bad training images."""

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from i2i.cyclegan.checkpoint import CHECKPOINT_FILES, latest_checkpoint, load_generator
from i2i.errors import OutputError

TINY = ["--ngf", "8", "--ndf", "8", "--shapes-count", "16", "--batch-size", "2", "--num-workers", "0",
        "--save-every", "1", "--log-every", "1", "--keep-checkpoints", "2", "--quiet"]


def i2i(*args, **kw):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "i2i", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_kill_9_always_leaves_a_loadable_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    rng = random.Random(0)
    resume: list[str] = []
    last = 0
    for round_ in range(3):
        proc = i2i("cyclegan", "train", "builtin:shapes", "--run-dir", run_dir, "--max-iters", 100000, *TINY,
                   *resume)
        deadline = time.monotonic() + 120
        while latest_checkpoint(run_dir) is None or int(latest_checkpoint(run_dir).name[5:]) <= last:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 1.0))             # land somewhere inside a later step or save
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        ckpt = latest_checkpoint(run_dir)
        assert all((ckpt / f).is_file() for f in CHECKPOINT_FILES)
        load_generator(ckpt / "G_A.safetensors")
        last = int(ckpt.name[5:])
        resume = ["--resume"]
    done = i2i("cyclegan", "train", "builtin:shapes", "--run-dir", run_dir, "--max-iters", last + 1, *TINY,
               "--resume")
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert latest_checkpoint(run_dir).name == f"iter_{last + 1:08d}"


def test_full_disk_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    import dataclasses

    from i2i.cyclegan import checkpoint as ckpt_mod
    from i2i.cyclegan.config import DiscriminatorConfig, GeneratorConfig, TrainConfig
    from i2i.cyclegan.trainer import train
    from i2i.errors import OutputError

    cfg = TrainConfig(dataroot="builtin:shapes", run_dir=str(tmp_path / "run"),
                      generator=GeneratorConfig(arch="resnet_6blocks", ngf=8), discriminator=DiscriminatorConfig(ndf=8),
                      load_size=32, crop_size=32, preprocess="none", shapes_count=8, batch_size=2, num_workers=0,
                      save_every=2, max_iters=2)
    train(cfg)
    real_save = ckpt_mod.save_weights

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "save_weights", full_disk)
    with pytest.raises(OutputError, match="No space left"):
        from i2i.cyclegan.trainer import resolve_config
        train(resolve_config(dataclasses.replace(cfg, max_iters=4), True, {"max_iters"}), resume=True)
    monkeypatch.setattr(ckpt_mod, "save_weights", real_save)
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt.name == "iter_00000002" and all((ckpt / f).is_file() for f in CHECKPOINT_FILES)
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]


def test_full_disk_while_translating_leaves_no_partial_file(tmp_path, monkeypatch):
    from i2i.cyclegan.config import GeneratorConfig
    from i2i.cyclegan.networks import define_G
    from i2i.cyclegan.translator import TranslateConfig, translate_images
    from i2i.images import expand_inputs

    for i in range(3):
        Image.new("RGB", (16, 16), "red").save(tmp_path / f"{i}.png")
    real = Image.Image.save
    calls = []

    def flaky_save(self, fp, *a, **k):
        calls.append(fp)
        if len(calls) == 2:
            Path(fp).write_bytes(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", flaky_save)
    cfg = GeneratorConfig(arch="resnet_6blocks", ngf=4)
    with pytest.raises(OutputError, match="No space left"):          # a full disk stops the batch there
        translate_images(expand_inputs([tmp_path / f"{i}.png" for i in range(3)]), define_G(cfg).eval(), cfg,
                         tmp_path / "out", TranslateConfig(num_workers=0, batch_size=1))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png"]     # no partial file, no temp left


def test_bad_training_images_are_skipped_with_a_warning(tmp_path):
    for split in ("trainA", "trainB"):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), "blue").save(tmp_path / "data" / split / f"{i}.png")
    (tmp_path / "data" / "trainA" / "zero.png").write_bytes(b"")
    (tmp_path / "data" / "trainB" / "text.jpg").write_text("not a jpeg")
    proc = i2i("cyclegan", "train", tmp_path / "data", "--run-dir", tmp_path / "run", "--max-iters", 1,
               "--crop-size", 32, "--load-size", 32, *TINY)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "zero.png" in err and "text.jpg" in err and "Traceback" not in err


def test_reference_checkpoint_for_another_architecture(tmp_path):
    import torch

    from i2i.cyclegan.config import GeneratorConfig
    from i2i.cyclegan.networks import define_G

    torch.save(define_G(GeneratorConfig(arch="resnet_6blocks", ngf=8)).state_dict(), tmp_path / "g.pth")
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    proc = i2i("cyclegan", "translate", tmp_path / "x.png", "-c", tmp_path / "g.pth", "--net-g", "resnet_9blocks",
               "--ngf", 8, "--out", tmp_path / "out", "--quiet")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 4 and "do not fit" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cut_run_killed_with_9_resumes_to_identical_weights(tmp_path):
    from safetensors.torch import load_file

    flags = [*TINY, "--model", "cut", "--netf-nc", "16", "--num-patches", "16"]
    total = 6
    ref = i2i("cyclegan", "train", "builtin:shapes", "--run-dir", tmp_path / "ref", "--max-iters", total, *flags)
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err

    run_dir = tmp_path / "run"
    proc = i2i("cyclegan", "train", "builtin:shapes", "--run-dir", run_dir, "--max-iters", total, *flags)
    deadline = time.monotonic() + 120
    while latest_checkpoint(run_dir) is None or int(latest_checkpoint(run_dir).name[5:]) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(random.Random(1).uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = int(latest_checkpoint(run_dir).name[5:])
    assert killed_at < total, "the run ended before it was killed: nothing was tested"
    done = i2i("cyclegan", "train", "--run-dir", run_dir, "--max-iters", total, "--resume", "--quiet")
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err

    a, b = latest_checkpoint(tmp_path / "ref"), latest_checkpoint(run_dir)
    assert a.name == b.name == f"iter_{total:08d}"
    for name in ("G_A", "D_A", "F"):
        wa, wb = load_file(a / f"{name}.safetensors"), load_file(b / f"{name}.safetensors")
        assert wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa), name
