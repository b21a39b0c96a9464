"""Ctrl-C (SIGINT) and SIGTERM during training: a resumable checkpoint is saved, exit code 130, resume works."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["cyclegan", "train", "builtin:shapes", "--max-iters", "100000", "--ngf", "8", "--ndf", "8",
        "--shapes-count", "16", "--batch-size", "2", "--log-every", "1", "--num-workers", "0", "--quiet"]


def start(run_dir: Path, extra: list[str]) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "i2i", *ARGS, *extra, "--run-dir", str(run_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_log(proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file() and log.read_text().count("\n") >= 3:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.communicate()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("training did not start in time")


@pytest.mark.parametrize("sig,extra", [(signal.SIGINT, []), (signal.SIGTERM, []),
                                       (signal.SIGINT, ["--model", "fastcut", "--num-patches", "16"])])
def test_signal_saves_and_resume_continues(tmp_path, sig, extra):
    run_dir = tmp_path / "run"
    proc = start(run_dir, extra)
    wait_for_log(proc, run_dir / "log.jsonl")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"i2i cyclegan train --run-dir {run_dir} --resume" in err and "Traceback" not in err
    latest = (run_dir / "latest").read_text().strip()
    stopped_at = int(latest.rsplit("_", 1)[1])
    assert stopped_at >= 3
    assert (run_dir / latest / "train_state.json").is_file()
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]   # no temp folders
    # resume to a few iterations further
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "i2i", "cyclegan", "train", "--max-iters", str(stopped_at + 2),
                           "--run-dir", str(run_dir), "--resume", "--quiet"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (run_dir / "latest").read_text().strip() == f"checkpoints/iter_{stopped_at + 2:08d}"
