"""The video benchmark scripts and the clip example run (tiny settings, nothing timed here) and end with one JSON
line of results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from i2i.cyclegan.checkpoint import save_generator
from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.networks import define_G
from i2i.video.reading import probe_video, read_frames

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(path, *args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def script(path, *args):
    proc = run(path, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_video_throughput_runs():
    out = script(EXAMPLES / "benchmarks" / "video_throughput.py", "--frames", 3, "--side", 32, "--repeats", 1,
                 "--batch-sizes", 2, "--precisions", "fp32", "--memory-frames", "4")
    record = json.loads(out.strip().splitlines()[-1])
    assert record["benchmark"] == "video_throughput"
    assert set(record["frames_per_second"]) == {"one frame at a time, fp32", "i2i, batch 2, fp32"}
    assert [m["frames"] for m in record["memory"]] == [4]


def test_video_flicker_runs(tmp_path):
    torch.manual_seed(0)
    cfg = GeneratorConfig(arch="resnet_6blocks", ngf=4)
    gen = save_generator(tmp_path / "G.safetensors", define_G(cfg), cfg)
    out = script(EXAMPLES / "benchmarks" / "video_flicker.py", "--run", gen, "--clips", 1, "--frames", 4,
                 "--side", 32)
    record = json.loads(out.strip().splitlines()[-1])
    assert set(record["results"]) == {"off", "temporal 0.5"}
    assert {"warping_error_true_flow", "warping_error_farneback", "shape_accuracy", "iou"} <= set(
        record["results"]["off"])


def test_make_clip(tmp_path):
    script(EXAMPLES / "make_clip.py", tmp_path / "c.mp4", "--frames", 5, "--size", 32)
    info = probe_video(tmp_path / "c.mp4")
    assert (info.frames, info.width, info.audio_codec) == (5, 32, "aac")
    script(EXAMPLES / "make_clip.py", tmp_path / "still.mp4", "--frames", 3, "--size", 32, "--still")
    frames = [f.array.astype(int) for f in read_frames(tmp_path / "still.mp4")]
    moving = [f.array.astype(int) for f in read_frames(tmp_path / "c.mp4")]
    assert max(abs(f - frames[0]).mean() for f in frames) < 1 < abs(moving[2] - moving[0]).mean()


def test_diffusion_video_flicker_options():
    bench = EXAMPLES / "benchmarks" / "diffusion_video_flicker.py"
    out = script(bench, "--help")
    assert "--method {ctrlx,freecontrol}" in out and "--inversion-steps" in out and "--still" in out
    proc = run(bench, "--inversion-steps", "5")
    assert proc.returncode == 1 and "--inversion-steps is FreeControl's" in proc.stderr   # before any model loads
