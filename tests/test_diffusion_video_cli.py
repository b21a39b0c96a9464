"""`i2i ctrlx --structure clip.mp4` / `i2i freecontrol --condition clip.mp4` on the bundled demo model and a tiny
SD: one output frame per input frame with one seed, written as an .mp4; existing outputs, skip, overwrite and bad
clips handled like images."""

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_sd import one_thread, save_sd  # noqa: F401  (one_thread: autouse fixture)
from typer.testing import CliRunner
from video_clips import make_clip, moving_frames, tone

from i2i.cli.app import app
from i2i.video.reading import probe_video, read_frames
from i2i.video.writing import EncodeSettings, write_video


def records(text):
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [r for r in lines if r.get("kind") != "summary"]


def ctrlx(*args):
    return CliRunner().invoke(app, ["ctrlx", "--steps", "2", "-q", *map(str, args)])


def no_model(monkeypatch):
    from i2i.ctrlx.pipeline import CtrlXPipeline

    monkeypatch.setattr(CtrlXPipeline, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("loaded")))


def test_still_clip_gives_still_video_and_existing_output_rules(tmp_path, monkeypatch):
    still = write_video(tmp_path / "still.mp4", moving_frames(1, 32, 32) * 3, 8, EncodeSettings(crf=0),
                        audio=tone(3 / 8))
    out = tmp_path / "out"
    res = ctrlx("--prompt", "a red square", "--structure", still, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    [record] = records(res.stdout)
    target = out / "000-still-a-red-square.mp4"
    assert record["image"] == str(target) and record["frames"] == 3 and record["seconds"] > 0 and "fps" in record
    info = probe_video(target)
    assert (info.frames, info.fps, info.audio_codec) == (3, 8, "aac")
    frames = [f.array.astype(int) for f in read_frames(target)]
    assert max(np.abs(f - frames[0]).mean() for f in frames) < 1.5      # same noise, same input: same frame
    assert frames[0].std() > 5                                           # not a blank clip

    no_model(monkeypatch)
    res = ctrlx("--prompt", "a red square", "--structure", still, "--out", out)
    assert res.exit_code == 6 and "already exists" in res.output
    res = ctrlx("--prompt", "a red square", "--structure", still, "--out", out, "--skip-existing", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout.splitlines()[-1])["skipped"] == 1


def test_moving_clip_keeps_frame_count_and_overwrites(tmp_path, monkeypatch):
    from i2i.preprocess import maps

    mapped = []
    real = maps.condition_map
    monkeypatch.setattr(maps, "condition_map", lambda image, *a: mapped.append(image.size) or real(image, *a))
    clip = make_clip(tmp_path / "clip.mkv", n=4, width=48, height=32, fps=10, audio=False)
    target = tmp_path / "moving.mp4"
    for extra in ((), ("--overwrite", "--preprocess", "invert")):
        res = ctrlx("--prompt", "a red square", "--structure", clip, "--out", target, *extra)
        assert res.exit_code == 0, res.output
    info = probe_video(target)
    assert (info.frames, info.fps, info.audio_codec) == (4, 10, None)
    assert mapped == [(48, 32)] * 4                   # --preprocess: each frame mapped, once, in the second run
    assert not list(tmp_path.glob("*.tmp*"))


def test_bad_clips_and_options_fail_before_the_model_loads(tmp_path, monkeypatch):
    no_model(monkeypatch)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    res = ctrlx("--prompt", "a square", "--structure", broken, "--out", tmp_path / "o")
    assert res.exit_code == 3 and "broken.mp4: not a readable video" in res.output
    clip = make_clip(tmp_path / "clip.mp4", n=3, width=32, height=32, audio=False)
    res = ctrlx("--prompt", "a square", "--structure", clip, "-n", "2", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "--num-images 1" in res.output
    res = ctrlx("--prompt", "a", "--prompt", "b", "--structure", clip, "--out", tmp_path / "one.mp4")
    assert res.exit_code == 2 and "names one video file" in res.output
    res = ctrlx("--prompt", "a square", "--structure", clip, "--out", tmp_path / "x.png")
    assert res.exit_code == 2 and "names an image file" in res.output and "give x.mp4" in res.output, res.output
    res = ctrlx("--prompt", "a square", "--structure", clip, "--save-branches", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "companion pictures" in res.output, res.output
    import i2i.cli.diffusion as diffusion_cli

    monkeypatch.setattr(diffusion_cli, "job_scorers", lambda *a, **k: pytest.fail("scoring weights looked for"))
    res = ctrlx("--prompt", "a square", "--structure", clip, "--score", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "--score is for image outputs, not videos" in res.output, res.output
    res = ctrlx("--prompt", "a square", "--structure", clip, "--out", tmp_path / "d.webm")     # no H.264 in WebM
    assert res.exit_code == 2 and "--out d.webm (H.264)" in res.output and "--codec" not in res.output, res.output
    whole = make_clip(tmp_path / "whole.mkv", n=30, width=32, height=32, audio=False)
    cut = tmp_path / "cut.mkv"                         # read to its end (not decoded) before any model loads
    cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
    res = ctrlx("--prompt", "a square", "--structure", cut, "--out", tmp_path / "o")
    assert res.exit_code == 3 and "cut.mkv: corrupt or truncated video: it ends after frame" in res.output


def freecontrol(tmp_path, condition, out):
    """`i2i freecontrol` on a tiny SD with a few steps everywhere (its own bases and inversions)."""
    fast = ["--steps", "3", "--inversion-steps", "3", "--seed-images", "2", "--bases-steps", "3", "--cache-dir",
            str(tmp_path / "cache"), "--model", str(save_sd(tmp_path / "tiny-sd")), "-q", "--json"]
    res = CliRunner().invoke(app, ["freecontrol", *fast, "--prompt", "a square", "--condition", str(condition),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    [record] = records(res.stdout)
    return record


def test_freecontrol_condition_clip(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", n=3, width=32, height=32, fps=10, audio=True)
    record = freecontrol(tmp_path, clip, tmp_path / "o")
    assert record["frames"] == 3 and Path(record["image"]).suffix == ".mp4"
    info = probe_video(record["image"])
    assert (info.frames, info.fps, info.audio_codec) == (3, 10, "aac")


def test_freecontrol_still_clip_stays_still(tmp_path):
    still = write_video(tmp_path / "still.mp4", moving_frames(1, 32, 32) * 3, 8, EncodeSettings(crf=0))
    record = freecontrol(tmp_path, still, tmp_path / "still_out.mp4")
    frames = [f.array.astype(int) for f in read_frames(record["image"])]
    assert len(frames) == 3 and frames[0].std() > 5                     # not a blank clip
    assert max(np.abs(f - frames[0]).mean() for f in frames) < 1.5      # same noise, same input: same frame
