"""Diffusion control on a video (library side): one frame per input frame, the same initial noise on every frame,
the clip's audio kept."""

import numpy as np
import pytest

from i2i.ctrlx.pipeline import CtrlXPipeline
from i2i.shapes import ShapeSpec, moving_specs, render
from i2i.video.diffusion import ctrlx_frames, generate_video
from i2i.video.reading import probe_video, read_frames
from i2i.video.writing import EncodeSettings, write_video
from tiny_sd import sd_pipeline
from video_clips import tone


@pytest.fixture(scope="module")
def pipe():
    return CtrlXPipeline(sd_pipeline(), device="cpu")


def sketch_clip(path, frames, still=False):
    specs = moving_specs(ShapeSpec("square", "red", 0.4, 0.4, 0.2), frames, (0.0, 0.0) if still else (0.08, 0.0))
    pictures = [np.asarray(render(s, 32, style="outline")) for s in specs]
    return write_video(path, pictures, 8, audio=tone(frames / 8))


def test_still_scene_stays_still_and_audio_is_kept(pipe, tmp_path):
    from i2i.ctrlx.config import CtrlXConfig

    config = CtrlXConfig(num_inference_steps=3)
    src = sketch_clip(tmp_path / "still.mp4", 3, still=True)
    lossless = EncodeSettings(crf=0)
    job = generate_video(src, tmp_path / "out.mp4", ctrlx_frames(pipe, "a red square", seed=5, config=config),
                         lossless)
    info = probe_video(job.output)
    assert (job.frames, info.frames, info.audio_codec, job.audio) == (3, 3, "aac", "copied")
    frames = [f.array.astype(int) for f in read_frames(job.output)]
    # same noise, same condition: the same frame (up to H.264's rounding at crf 0)
    assert max(np.abs(f - frames[0]).mean() for f in frames) < 0.5
    seeds = iter([5, 6, 7])
    varying = generate_video(src, tmp_path / "seeds.mp4",
                             lambda img: pipe("a red square", structure=img, seed=next(seeds), config=config,
                                              decode_branches=False).images[0], lossless)
    other = [f.array.astype(int) for f in read_frames(varying.output)]
    assert np.abs(other[0] - frames[0]).mean() < 0.5 and np.abs(other[1] - other[0]).mean() > 5  # per-frame seeds


def test_moving_structure_gives_one_frame_each(pipe, tmp_path):
    from i2i.ctrlx.config import CtrlXConfig

    src = sketch_clip(tmp_path / "moving.mkv", 4)
    job = generate_video(src, tmp_path / "moving_out.mp4",
                         ctrlx_frames(pipe, "a red square", seed=0, config=CtrlXConfig(num_inference_steps=2)))
    assert job.frames == 4 and probe_video(job.output).fps == 8
