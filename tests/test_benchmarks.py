"""The benchmark scripts run (tiny settings, nothing timed here) and end with one JSON line of results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "examples" / "benchmarks"


@pytest.mark.parametrize("script, args, key", [
    ("cyclegan_train_step.py", ["--size", "32", "--iters", "1", "--warmup", "0", "--threads", "1"], "median_s"),
    ("translate_throughput.py", ["--images", "2", "--size", "32", "--repeats", "1"], "images_per_second"),
    ("freecontrol_speed.py", ["--model", "demo", "--steps", "4", "--repeats", "1", "--seed-images", "2",
                              "--inversion-steps", "4", "--threads", "1", "--one-call", "both", "--breakdown"],
     "guided_over_plain"),
    ("cold_start.py", ["--repeats", "1"], "results"),
    ("bf16_losses.py", ["--size", "32", "--iters", "4", "--log-every", "2", "--threads", "1"], "largest_cycle_gap"),
])
def test_benchmark_script_runs(script, args, key, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", I2I_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["benchmark"] == script[:-3] and key in record
    if script == "freecontrol_speed.py":           # both layouts measured, each broken down into its UNet calls
        assert set(record["guided_over_plain_by_layout"]) == set(record["breakdown"]) == {"one call", "two calls"}
        two, one = record["breakdown"]["two calls"], record["breakdown"]["one call"]
        assert "UNet call, 1 row(s), with gradients" in two and "UNet call, 4 row(s), with gradients" in one
        assert two["backward (autograd.grad)"]["count"] == one["backward (autograd.grad)"]["count"] > 0
