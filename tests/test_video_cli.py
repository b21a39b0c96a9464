"""``i2i cyclegan translate`` on videos: one clip to a file, folders mixing videos and images, --json, progress in
frames, refusals and exit codes, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.cyclegan.checkpoint import save_generator
from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.networks import define_G
from i2i.video.reading import probe_video
from video_clips import make_clip


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def gen_file(tmp_path_factory):
    torch.manual_seed(0)
    cfg = GeneratorConfig(arch="resnet_6blocks", ngf=4)
    return save_generator(tmp_path_factory.mktemp("g") / "G.safetensors", define_G(cfg), cfg)


def test_one_clip_to_a_file_with_json(gen_file, tmp_path):
    clip = make_clip(tmp_path / "clip.mkv", n=5, width=40, height=32, fps=10)
    res = run("cyclegan", "translate", clip, "-c", gen_file, "--out", tmp_path / "res" / "zebra.mp4", "--json",
              "--batch-size", 2, "--temporal")
    assert res.exit_code == 0, res.output
    record, summary = [json.loads(line) for line in res.stdout.splitlines()]
    assert summary["kind"] == "summary" and summary["translated"] == 1 and summary["failed"] == 0
    assert record["frames"] == 5 and record["fps"] > 0 and record["seconds"] > 0 and record["audio"] == "copied"
    info = probe_video(tmp_path / "res" / "zebra.mp4")
    assert (info.frames, info.fps, info.width, info.height, info.audio_codec) == (5, 10, 40, 32, "aac")
    assert "clip.mkv: frames 5/5 (100%)" in res.stderr       # progress in frames (plain lines: not a terminal)


def test_folder_with_videos_and_images(gen_file, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    make_clip(src / "sub" / "a.mov", n=3, width=32, height=32, audio=False)
    make_clip(src / "b.mp4", n=3, width=32, height=32)
    Image.new("RGB", (20, 24), "red").save(src / "c.png")
    res = run("cyclegan", "translate", src, "-c", gen_file, "--out", tmp_path / "out", "--suffix", "_x", "-q")
    assert res.exit_code == 0, res.output
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["b_x.mp4", "c_x.png", "sub/a_x.mp4"]
    assert probe_video(tmp_path / "out" / "sub" / "a_x.mp4").frames == 3
    # all outputs there: refused before the model is loaded (exit 6), nothing touched
    again = run("cyclegan", "translate", src, "-c", tmp_path / "no_such_model", "--out", tmp_path / "out",
                "--suffix", "_x", "-q")
    assert again.exit_code == 6 and "already exist" in again.stderr


def test_bad_clip_in_a_batch_is_reported_and_the_rest_written(gen_file, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "good.mp4", n=3, width=32, height=32)
    (src / "broken.mp4").write_bytes(b"\x00" * 300)
    res = run("cyclegan", "translate", src, "-c", gen_file, "--out", tmp_path / "out", "-q")
    assert res.exit_code == 1
    assert "broken.mp4: not a readable video" in res.stderr and "1 of 2 input(s) failed" in res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mp4"]


@pytest.mark.parametrize("args, code, message", [
    (["--codec", "nonsense"], 2, "no such video encoder"),
    (["--crf", "80"], 2, "--crf 80"),
    (["--out", "{tmp}/two.mp4", "{tmp}/clip2.mp4"], 2, "names one video file"),
    (["--out", "{tmp}/o.png"], 2, "names an image file, but a video would be written"),
    (["--out", "{tmp}/o.gif"], 2, "names an image file, but a video would be written"),
])
def test_video_flags_checked_before_the_model_is_loaded(tmp_path, args, code, message):
    make_clip(tmp_path / "clip.mp4", n=2, width=32, height=32, audio=False)
    make_clip(tmp_path / "clip2.mp4", n=2, width=32, height=32, audio=False)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = run("cyclegan", "translate", tmp_path / "clip.mp4", "-c", tmp_path / "no_such_model", *args)
    assert res.exit_code == code and message in res.stderr, res.output


def _default_sigint() -> None:
    """In the child: SIGINT's default action, even when the suite was started where SIGINT is ignored (a
    background job of a non-interactive shell), so that Python installs its KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_leaves_no_output(gen_file, tmp_path):
    clip = make_clip(tmp_path / "long.mp4", n=400, width=64, height=64, audio=False)
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "i2i", "cyclegan", "translate", str(clip), "-c", str(gen_file),
                             "--out", str(out), "--batch-size", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.iterdir())) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not list(out.iterdir()), list(out.iterdir())   # the temporary file is gone, no long.mp4


def test_mixed_folder_shards_and_skip_existing(gen_file, tmp_path):
    """Clips are inputs like images for --shard and --skip-existing: two shares write what one process writes,
    and a rerun with --skip-existing counts clip and images as existing (exit 0, nothing rewritten)."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    make_clip(src / "sub" / "a.mkv", n=3, width=32, height=32, fps=10)
    make_clip(src / "b.mp4", n=3, width=32, height=32, fps=10)
    for i in range(3):
        Image.new("RGB", (24, 24), (40 * i, 90, 200)).save(src / f"im{i}.png")
    whole = run("cyclegan", "translate", src, "-c", gen_file, "--out", tmp_path / "one")
    assert whole.exit_code == 0, whole.output
    for k in range(2):
        part = run("cyclegan", "translate", src, "-c", gen_file, "--out", tmp_path / "two", "--shard", f"{k}/2")
        assert part.exit_code == 0, part.output
    names = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert names(tmp_path / "one") == names(tmp_path / "two") == [
        "b.mp4", "im0.png", "im1.png", "im2.png", "sub/a.mp4"]
    for name in ("im0.png", "im2.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    before = {n: (tmp_path / "one" / n).stat().st_mtime_ns for n in names(tmp_path / "one")}
    again = run("cyclegan", "translate", src, "-c", gen_file, "--out", tmp_path / "one", "--skip-existing")
    assert again.exit_code == 0, again.output
    assert "skipped 5 existing" in again.output and "already exists" not in again.output
    assert {n: (tmp_path / "one" / n).stat().st_mtime_ns for n in names(tmp_path / "one")} == before


def test_a_folder_translated_into_itself_can_be_run_again(gen_file, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    make_clip(folder / "clip.mkv", n=3, width=32, height=32)
    assert run("cyclegan", "translate", folder, "-c", gen_file, "--out", folder, "-q").exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["clip.mkv", "clip.mp4"]
    res = run("cyclegan", "translate", folder, "-c", gen_file, "--out", folder, "-q")
    assert res.exit_code == 6 and "already exist" in res.output, res.output     # not 'both written as clip'
    assert run("cyclegan", "translate", folder, "-c", gen_file, "--out", folder, "-q", "--skip-existing"
               ).exit_code == 0
    assert run("cyclegan", "translate", folder, "-c", gen_file, "--out", folder, "-q", "--overwrite").exit_code == 0


def test_out_an_existing_file_is_a_usage_error_for_clips_as_for_images(gen_file, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", n=2, width=32, height=32)
    (tmp_path / "notes.txt").write_text("mine")
    res = run("cyclegan", "translate", clip, "-c", gen_file, "--out", tmp_path / "notes.txt")
    assert res.exit_code == 2 and "is an existing file, not a folder" in res.output
    assert (tmp_path / "notes.txt").read_text() == "mine"
