"""The benchmark scripts run (tiny settings, nothing timed here) and end with one JSON line of results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "examples" / "benchmarks"


@pytest.mark.parametrize("script, args, key", [
    ("cyclegan_train_step.py", ["--size", "32", "--iters", "1", "--warmup", "0", "--threads", "1"], "median_s"),
    ("method_train_step.py", ["--size", "32", "--iters", "1", "--warmup", "0", "--threads", "1", "--ngf", "4"],
     "results"),
    ("translate_throughput.py", ["--images", "2", "--size", "32", "--repeats", "1"], "images_per_second"),
    ("translate_shards.py", ["--images", "3", "--size", "32", "--repeats", "1"], "results"),
    ("freecontrol_speed.py", ["--model", "demo", "--steps", "4", "--repeats", "1", "--seed-images", "2",
                              "--inversion-steps", "4", "--threads", "1", "--one-call", "both", "--breakdown"],
     "guided_over_plain"),
    ("ctrlx_speed.py", ["--model", "demo", "--steps", "3", "--repeats", "1", "--threads", "1"], "ctrlx_over_plain"),
    ("cold_start.py", ["--repeats", "1"], "results"),
    ("cross_process_determinism.py", ["--runs", "2", "--size", "16", "--ngf", "4", "--threads", "1"],
     "distinct_outputs"),
    ("preprocess_libraries.py", ["--limit", "2", "--sizes", "32", "--repeats", "1"], "results"),
    ("preprocess_map_size.py", ["--seeds", "1", "--steps", "4", "--shapes", "square", "--seed-images", "2",
                                "--bases-steps", "6", "--inversion-steps", "8"], "iou"),
    ("bf16_losses.py", ["--size", "32", "--iters", "4", "--log-every", "2", "--threads", "1"], "largest_cycle_gap"),
    ("equal_time.py", ["builtin:shapes", "--minutes", "0.02", "--out", "{tmp}/runs", "--limit", "4", "--", "--ngf",
                       "4", "--ndf", "4", "--shapes-count", "8", "--n-epochs", "100000"], "results"),
    ("vae_decode_memory.py", ["--size", "64", "--threads", "1", "--tiny"], "results"),
    ("model_weights.py", ["--model", "sd15-random", "--precision", "fp16"], "without_text_encoders_gib"),
    ("shapes_step_time.py", ["--rounds", "1", "--block", "1", "--overrides",
                             '{"cyclegan": {"generator": {"ngf": 4}}, "fastcut": {"generator": {"ngf": 4}}}'],
     "median_s_per_step"),
    ("step_time_two_trees.py", ["--old", str(BENCH.parents[1]), "--new", str(BENCH.parents[1]), "--rounds", "1",
                                "--block", "1", "--warmup", "0", "--models", "cyclegan"], "median_s_per_step"),
    ("shapes_preset.py", ["--overrides", '{"generator": {"ngf": 8}, "discriminator": {"ndf": 8}}', "--max-iters", "3",
                          "--limit", "2", "--threads", "1", "--run-dir", "{tmp}/run"], "at_end"),
])
def test_benchmark_script_runs(script, args, key, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", I2I_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["benchmark"] == script[:-3] and key in record
    if script == "translate_throughput.py":        # resnet_9blocks is fully convolutional: 99.1 GFLOP at 256 px
        assert record["gflop_per_image"] == pytest.approx(99.103 * (32 / 256) ** 2, abs=0.05)
    if script in ("translate_throughput.py", "cyclegan_train_step.py"):
        assert record["fp32_matmul_peak_gflops"] > 0
    if script == "freecontrol_speed.py":           # both layouts measured, each broken down into its UNet calls
        assert set(record["guided_over_plain_by_layout"]) == set(record["breakdown"]) == {"one call", "two calls"}
        two, one = record["breakdown"]["two calls"], record["breakdown"]["one call"]
        assert "UNet call, 1 row(s), with gradients" in two and "UNet call, 4 row(s), with gradients" in one
        assert two["backward (autograd.grad)"]["count"] == one["backward (autograd.grad)"]["count"] > 0


def test_roofline_counts_convolution_and_matmul_flops():
    sys.path.insert(0, str(BENCH))
    try:
        from roofline import count_gflop
    finally:
        sys.path.remove(str(BENCH))
    conv = torch.nn.Conv2d(3, 4, 3)                 # 6 x 6 outputs x 4 channels x 27 multiply-adds
    x = torch.zeros(1, 3, 8, 8)
    assert count_gflop(lambda: conv(x)) * 1e9 == pytest.approx(2 * 36 * 4 * 27)
    a, b = torch.zeros(5, 7), torch.zeros(7, 3)
    assert count_gflop(lambda: a @ b) * 1e9 == pytest.approx(2 * 5 * 7 * 3)
