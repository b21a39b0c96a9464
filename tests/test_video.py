"""Video translation: frame count, rate, timestamps, size and audio kept; batches; bounded memory; every error path
(corrupt, truncated, empty, missing, existing output, interrupt) leaves no file that looks complete."""

import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.networks import define_G
from i2i.cyclegan.translator import TranslateConfig
from i2i.errors import InputError, OutputError, UsageError
from i2i.images import InputItem
from i2i.video import pipeline, split_videos, video_targets
from i2i.video.reading import CorruptVideoError, probe_video, read_frames
from i2i.video.translate import VideoOptions, translate_video, translate_videos
from i2i.video.writing import EncodeSettings, VideoWriter, write_video
from video_clips import make_clip, moving_frames, tone

CFG = GeneratorConfig(arch="resnet_6blocks", ngf=4)


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return define_G(CFG).eval()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", n=6)


def audio_packets(path):
    with av.open(str(path)) as c:
        return [(bytes(p), p.pts) for p in c.demux(c.streams.audio[0]) if p.size]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_translate_keeps_frames_rate_size_and_copies_the_audio(gen, clip, tmp_path):
    out = tmp_path / "out.mp4"
    job = translate_video(clip, out, gen, CFG)
    src, res = probe_video(clip), probe_video(out)
    assert (res.width, res.height, res.fps, res.codec) == (48, 32, Fraction(12), "h264")
    assert job.frames == res.frames == src.frames == 6 == len(list(read_frames(out)))
    assert job.audio == "copied" and res.audio_codec == "aac"
    assert audio_packets(out) == audio_packets(clip)      # the very same packets
    record = job.record()
    assert record["frames"] == 6 and record["fps"] > 0 and record["seconds"] > 0
    assert leftovers(tmp_path) == ["out.mp4"]


def test_frames_are_the_generator_outputs(gen, clip, tmp_path):
    from i2i.cyclegan.translator import translate_tensor
    from i2i.video.translate import frames_to_tensor, tensor_to_frames

    out = translate_video(clip, tmp_path / "o.mp4", gen, CFG, TranslateConfig(batch_size=4),
                          VideoOptions(EncodeSettings(crf=0))).output
    inputs = [f.array for f in read_frames(clip)]
    with torch.inference_mode():
        expected = tensor_to_frames(translate_tensor(gen, CFG, frames_to_tensor(inputs), torch.device("cpu")))
    got = [f.array for f in read_frames(out)]
    # crf 0 keeps the luma within rounding (the colour planes are subsampled 2x2: 4:2:0)
    luma = lambda a: a.astype(float) @ [0.299, 0.587, 0.114]  # noqa: E731
    assert len(got) == 6
    assert np.mean([np.abs(luma(g) - luma(e)).mean() for g, e in zip(got, expected)]) < 3


def test_timestamps_kept_for_a_variable_frame_rate(gen, tmp_path):
    src = tmp_path / "vfr.mkv"
    stamps = [0, 40, 120, 160, 300, 310]                  # milliseconds, irregular
    writer = VideoWriter(src, 32, 32, Fraction(25), time_base=Fraction(1, 1000))
    with writer:
        for pts, frame in zip(stamps, moving_frames(6, 32, 32)):
            writer.write(frame, pts)
    out = translate_video(src, tmp_path / "vfr_out.mkv", gen, CFG).output

    def times(path):
        with av.open(str(path)) as c:
            return [round(float(f.time), 3) for f in c.decode(video=0)]

    assert times(out) == times(src) == [s / 1000 for s in stamps]


def test_audio_reencoded_when_the_container_does_not_take_it(gen, tmp_path):
    src = write_video(tmp_path / "in.webm", moving_frames(4, 32, 32), 8, EncodeSettings("vp9", 40),
                      audio=tone(0.5))                    # Opus audio: MOV does not take it
    job = translate_video(src, tmp_path / "out.mov", gen, CFG)
    assert job.audio == "re-encoded (aac)" and probe_video(job.output).audio_codec == "aac"
    with av.open(str(job.output)) as c:
        seconds = sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].rate
    assert seconds == pytest.approx(0.5, abs=0.05)


def test_no_audio_and_odd_size(gen, tmp_path):
    src = make_clip(tmp_path / "odd.mp4", n=3, width=33, height=21, audio=False)
    job = translate_video(src, tmp_path / "odd_out.mp4", gen, CFG)
    info = probe_video(job.output)
    assert job.audio is None and info.audio_codec is None and (info.width, info.height) == (33, 21)


def test_size_and_grey_generator(tmp_path, clip):
    cfg = GeneratorConfig(arch="resnet_6blocks", ngf=4, input_nc=1, output_nc=1)
    job = translate_video(clip, tmp_path / "g.mp4", define_G(cfg).eval(), cfg, TranslateConfig(size=16))
    frame = next(read_frames(job.output)).array
    assert frame.shape == (32, 48, 3) and np.abs(frame[..., 0].astype(int) - frame[..., 2]).max() <= 2   # grey


def test_batches_and_memory_stay_bounded(monkeypatch, tmp_path):
    src = make_clip(tmp_path / "long.mp4", n=40, width=32, height=32, audio=False)
    decoded, written, ahead, sizes = [0], [0], [], []
    real = pipeline.read_frames

    def counting(*args, **kwargs):
        for frame in real(*args, **kwargs):
            decoded[0] += 1
            ahead.append(decoded[0] - written[0])
            yield frame

    def post(frame_in, frame_out):
        written[0] += 1
        return frame_out

    def process(frames):
        sizes.append(len(frames))
        return [255 - f for f in frames]

    monkeypatch.setattr(pipeline, "read_frames", counting)
    job = pipeline.run_video_job(src, tmp_path / "inv.mp4", process, batch_size=4, post=post)
    assert job.frames == 40 and sizes == [4] * 10
    assert max(ahead) <= 4 * 4 + 4 + 2      # two queues of 2 batches, one batch in hand, one frame each side
    first = next(read_frames(job.output)).array.astype(int)
    assert np.abs(first - (255 - moving_frames(1, 32, 32)[0].astype(int))).mean() < 6


def test_existing_output_refused_unless_overwrite(gen, clip, tmp_path):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="already exists"):
        translate_video(clip, out, gen, CFG)
    assert out.read_bytes() == b"keep me"
    translate_video(clip, out, gen, CFG, TranslateConfig(overwrite=True))
    assert probe_video(out).frames == 6 and leftovers(tmp_path) == ["o.mp4"]


def _damaged(tmp_path, name, how):
    good = make_clip(tmp_path / f"good{Path(name).suffix}", n=30, width=64, height=64, audio=False)
    data = good.read_bytes()
    bad = tmp_path / name
    bad.write_bytes(how(data))
    good.unlink()
    return bad


@pytest.mark.parametrize("name, how, match", [
    ("cut.mkv", lambda d: d[:len(d) // 2], "corrupt or truncated video: it ends after frame"),
    ("cut.mp4", lambda d: d[:len(d) // 2], "not a readable video"),           # the index (moov) is at the end
    ("noise.mp4", lambda d: bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)),
     "not a readable video"),
    ("empty.mp4", lambda d: b"", "empty file"),
])
def test_damaged_inputs_write_nothing(gen, tmp_path, name, how, match):
    bad = _damaged(tmp_path, name, how)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(InputError, match=match) as err:
        translate_video(bad, out_dir / "x.mp4", gen, CFG)
    assert str(bad) in str(err.value)
    assert leftovers(out_dir) == []


def test_decoding_error_midway_names_the_frame(tmp_path):
    good = make_clip(tmp_path / "g.mp4", n=30, width=64, height=64, audio=False)
    fast = tmp_path / "fast.mp4"                          # the index (moov) first, then the data, cut in half
    with av.open(str(good)) as src, av.open(str(fast), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.size:
                packet.stream = stream
                dst.mux(packet)
    data = fast.read_bytes()
    fast.write_bytes(data[:len(data) // 2])
    with pytest.raises(CorruptVideoError, match=r"fast.mp4: corrupt or truncated video: decoding failed after "
                                                r"frame \d+ of 30"):
        list(read_frames(fast))


def test_missing_input_and_no_video_stream(gen, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        translate_video(tmp_path / "nope.mp4", tmp_path / "o.mp4", gen, CFG)
    sound = tmp_path / "sound.mkv"
    with av.open(str(sound), "w") as c:
        stream = c.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    with pytest.raises(InputError, match="no video stream"):
        translate_video(sound, tmp_path / "o.mp4", gen, CFG)


def test_interrupt_leaves_no_file_and_no_thread(clip, tmp_path):
    before = threading.active_count()
    calls = []

    def process(frames):
        calls.append(len(frames))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return frames

    with pytest.raises(KeyboardInterrupt):
        pipeline.run_video_job(clip, tmp_path / "o.mp4", process, batch_size=2)
    assert leftovers(tmp_path) == []
    assert threading.active_count() == before


def test_encoder_errors_are_usage_errors(gen, clip, tmp_path):
    with pytest.raises(UsageError, match="no such video encoder"):
        translate_video(clip, tmp_path / "o.mp4", gen, CFG, video=VideoOptions(EncodeSettings("nonsense")))
    with pytest.raises(UsageError, match="does not support"):
        translate_video(clip, tmp_path / "o.webm", gen, CFG)           # H.264 in WebM
    with pytest.raises(UsageError, match="--crf"):
        EncodeSettings(crf=99)
    assert leftovers(tmp_path) == []


def test_an_avi_that_counts_time_base_ticks_as_frames_is_read_whole(tmp_path):
    """AVI with a 1/1000 time base: its header's frame count is in ticks (210 for 5 frames 42 ms apart)."""
    path = tmp_path / "ticks.avi"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i * 42, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert probe_video(path).frames > 5                          # what the header claims
    assert len(list(read_frames(path))) == 5


@pytest.mark.parametrize("width, height, message", [
    (33, 17, "fails on odd sides"),               # x265 would abort the process (heap corruption)
    (14, 10, "Invalid argument"),                 # below x265's smallest frame: the encoder does not open
])
def test_frames_an_encoder_cannot_take_are_usage_errors(tmp_path, width, height, message):
    hevc = EncodeSettings("hevc")
    with pytest.raises(UsageError, match=f"libx265 cannot encode {width}x{height} frames .*{message}"):
        with VideoWriter(tmp_path / "o.mp4", width, height, Fraction(24), hevc) as writer:
            writer.write(np.zeros((height, width, 3), np.uint8))


def test_batch_of_clips_reports_failures_and_goes_on(gen, clip, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    items = [InputItem(bad, Path("bad.mp4")), InputItem(clip, Path("sub/clip.mp4"))]
    targets = video_targets(items, tmp_path / "out", suffix="_x")
    assert targets == [tmp_path / "out" / "bad_x.mp4", tmp_path / "out" / "sub" / "clip_x.mp4"]
    result = translate_videos(items, targets, gen, CFG)
    assert result.ok == [targets[1]] and result.failed[0][0] == str(bad)


def test_split_and_targets():
    items = [InputItem(Path(p), Path(p)) for p in ("a.png", "b.MKV", "c.gif", "d/e.mov")]
    images, videos = split_videos(items)
    assert [i.path.name for i in images] == ["a.png", "c.gif"] and [v.path.name for v in videos] == ["b.MKV", "e.mov"]
    assert video_targets(videos[:1], "z.mp4") == [Path("z.mp4")]
    with pytest.raises(UsageError, match="names one video file"):
        video_targets(videos, "z.mp4")
    with pytest.raises(UsageError, match="names one video file"):
        video_targets(videos[:1], "z.mp4", n_images=1)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_still_image_named_like_a_video_is_refused(tmp_path, fmt):
    from PIL import Image

    fake = tmp_path / "still.mp4"
    Image.new("RGB", (16, 16), "red").save(fake, format=fmt)
    with pytest.raises(InputError, match="a still image .*not a video"):
        probe_video(fake)
    with pytest.raises(InputError, match="a still image"):
        next(read_frames(fake))


def test_the_av1_encoder_writes_no_banner_unless_asked(tmp_path):
    import os
    import subprocess
    import sys

    code = ("import sys, numpy as np; from i2i.video.writing import EncodeSettings, write_video; "
            "write_video(sys.argv[1], [np.zeros((32, 32, 3), np.uint8)] * 2, 8, EncodeSettings('av1'))")
    env = {k: v for k, v in os.environ.items() if k != "SVT_LOG"}
    quiet = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.mp4")], env=env, capture_output=True,
                           text=True, check=True)
    assert "Svt[info]" not in quiet.stderr and probe_video(tmp_path / "a.mp4").codec == "libdav1d"
    asked = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b.mp4")], env={**env, "SVT_LOG": "3"},
                           capture_output=True, text=True, check=True)
    assert "Svt[info]" in asked.stderr                       # the user's own SVT_LOG is kept


def first_times(path):
    """The first timestamp (seconds) of each stream type in ``path``."""
    firsts = {}
    with av.open(str(path)) as c:
        for p in c.demux():
            if p.pts is not None and p.stream.type not in firsts:
                firsts[p.stream.type] = float(p.pts * p.time_base)
    return firsts


def test_a_clip_that_does_not_start_at_zero_keeps_its_audio_in_sync(gen, tmp_path):
    from video_clips import av_clip

    src = av_clip(tmp_path / "late.mp4", start=5.0)
    out = tmp_path / "out.mp4"
    translate_video(src, out, gen, CFG)
    before, after = first_times(src), first_times(out)
    assert after["video"] - after["audio"] == pytest.approx(before["video"] - before["audio"], abs=0.01)
    assert min(after.values()) < 0.05 and probe_video(out).end < 1.5      # starts at 0: not a 6 s file


@pytest.mark.parametrize("name, kwargs", [("long-audio.mkv", {"audio_seconds": 1.3}), ("late.mkv", {"start": 5.0}),
                                          ("late.webm", {"start": 2.0, "vcodec": "libvpx-vp9", "acodec": "libopus"})])
def test_whole_matroska_clips_are_not_taken_for_truncated_ones(gen, tmp_path, name, kwargs):
    from video_clips import av_clip

    src = av_clip(tmp_path / name, "webm" if name.endswith("webm") else "matroska", **kwargs)
    job = translate_video(src, tmp_path / "out.mp4", gen, CFG)
    assert job.frames == 12


def test_a_cut_matroska_with_a_longer_audio_track_is_still_refused(gen, tmp_path):
    from video_clips import av_clip

    whole = av_clip(tmp_path / "whole.mkv", "matroska", n=48, audio_seconds=4.2)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
    with pytest.raises(CorruptVideoError, match="cut.mkv: corrupt or truncated video"):
        translate_video(cut, tmp_path / "out.mp4", gen, CFG)
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("source, fmt, out, mode", [
    ("pcm.avi", "avi", "out.mp4", "re-encoded (aac)"),      # PCM with no named layout: was exit 70
    ("pcm.mov", "mov", "out.ts", "re-encoded (aac)"),       # MPEG-TS writes PCM as a data stream: not "copied"
    ("aac.mp4", None, "out.mpg", "re-encoded (mp2)"),       # MPEG-PS takes neither AAC nor Opus
    ("aac.mp4", None, "out.mkv", "copied"),
])
def test_audio_goes_into_any_container_and_the_record_says_how(gen, tmp_path, source, fmt, out, mode):
    from video_clips import av_clip

    acodec = "pcm_s16le" if source.startswith("pcm") else "aac"
    src = av_clip(tmp_path / source, fmt, vcodec="mpeg4" if fmt == "avi" else "libx264", acodec=acodec)
    job = translate_video(src, tmp_path / out, gen, CFG)
    assert job.audio == mode
    with av.open(str(tmp_path / out)) as c:
        assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.channels == 2
        assert sum(p.size > 0 for p in c.demux(c.streams.audio[0])) > 0


def test_a_container_that_takes_no_h264_is_refused_before_the_model_loads(clip, tmp_path):
    from i2i.cyclegan.translate_job import translate_inputs

    with pytest.raises(UsageError, match="ogg file does not take libx264"):
        translate_inputs([str(clip)], tmp_path / "x.ogv", lambda: pytest.fail("the model was loaded"),
                         TranslateConfig())
    assert leftovers(tmp_path) == []


def test_a_full_disk_stops_a_video_batch(gen, clip, tmp_path, monkeypatch):
    import errno

    from i2i.video import writing

    def full(self, *a, **k):
        raise av.error.OSError(errno.ENOSPC, "No space left on device", "x.tmp")

    monkeypatch.setattr(writing.VideoWriter, "write", full)
    items = [InputItem(clip, Path(f"c{i}.mp4")) for i in range(3)]
    seen = []
    monkeypatch.setattr(pipeline, "probe_video", lambda p, real=pipeline.probe_video: seen.append(p) or real(p))
    with pytest.raises(OutputError, match="No space left on device"):
        translate_videos(items, [tmp_path / f"o{i}.mp4" for i in range(3)], gen, CFG)
    assert len(seen) == 1 and leftovers(tmp_path) == []                 # stopped at the first clip


def test_an_mp4_cut_near_its_end_is_refused(tmp_path):
    good = make_clip(tmp_path / "g.mp4", n=48, width=64, height=64, audio=True)
    fast = tmp_path / "fast.mp4"                          # the index first: a cut file still opens
    with av.open(str(good)) as src, av.open(str(fast), "w", options={"movflags": "faststart"}) as dst:
        outs = {s.type: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.size:
                packet.stream = outs[packet.stream.type]
                dst.mux(packet)
    data = fast.read_bytes()
    fast.write_bytes(data[:int(len(data) * 0.9)])
    with pytest.raises(CorruptVideoError, match=r"it ends after frame \d+ of 48"):
        list(read_frames(fast))


def test_transparent_pixels_of_a_clip_are_white_as_in_images(tmp_path):
    path = tmp_path / "alpha.mov"
    rgba = np.zeros((32, 32, 4), np.uint8)                 # transparent black, an opaque blue square in the middle
    rgba[8:24, 8:24] = (0, 0, 255, 255)
    with av.open(str(path), "w") as c:
        stream = c.add_stream("png", rate=12)
        stream.width = stream.height = 32
        stream.pix_fmt = "rgba"
        for _ in range(2):
            c.mux(stream.encode(av.VideoFrame.from_ndarray(rgba, format="rgba")))
        c.mux(stream.encode(None))
    frame = next(read_frames(path)).array
    assert tuple(frame[0, 0]) == (255, 255, 255) and tuple(frame[16, 16]) == (0, 0, 255)
    assert next(read_frames(path, grey=True)).array[0, 0] == 255


def test_non_square_pixels_are_kept(gen, tmp_path):
    src = tmp_path / "dv.mp4"
    with av.open(str(src), "w") as c:
        stream = c.add_stream("libx264", rate=12)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.codec_context.sample_aspect_ratio = Fraction(2, 1)
        for array in moving_frames(3, 32, 32):
            c.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        c.mux(stream.encode(None))
    translate_video(src, tmp_path / "out.mp4", gen, CFG)
    assert probe_video(tmp_path / "out.mp4").sample_aspect_ratio == Fraction(2, 1)
    translate_video(make_clip(tmp_path / "sq.mp4", n=2), tmp_path / "sq-out.mp4", gen, CFG)
    assert probe_video(tmp_path / "sq-out.mp4").sample_aspect_ratio is None


@pytest.mark.parametrize("codec, out", [("mjpeg", "o.avi"), ("mpeg2video", "o.mpg"), ("h264", "o.avi")])
def test_encoders_and_muxers_that_keep_time_in_frames(gen, tmp_path, codec, out):
    from video_clips import av_clip

    src = av_clip(tmp_path / "late.mp4", start=5.0)             # timestamps in 1/1200 s, a late start
    job = translate_video(src, tmp_path / out, gen, CFG, video=VideoOptions(EncodeSettings(codec)))
    assert job.frames == 12 == len(list(read_frames(tmp_path / out)))
    with av.open(str(tmp_path / out)) as c:
        stamps = sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size and p.pts is not None)
    steps = {b - a for a, b in zip(stamps, stamps[1:])}
    assert len(steps) == 1                                        # evenly spaced: no gap, no 600 fps header


def test_the_output_says_which_yuv_matrix_it_was_encoded_with(gen, clip, tmp_path):
    translate_video(clip, tmp_path / "o.mp4", gen, CFG)
    with av.open(str(tmp_path / "o.mp4")) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.colorspace, ctx.color_range) == (6, 1)       # BT.601 (SMPTE 170M), limited range


def test_the_frame_rate_grid_keeps_a_late_video_start(tmp_path):
    out = tmp_path / "late.avi"
    with VideoWriter(out, 32, 32, Fraction(25), EncodeSettings("mjpeg"), time_base=Fraction(1, 1000)) as writer:
        for i, frame in enumerate(moving_frames(4, 32, 32)):
            writer.write(frame, 500 + 40 * i)                    # the video starts 0.5 s into the clip's time
    with av.open(str(out)) as c:                                 # (AVI shows the first frame from 0 until then)
        stamps = [float(p.pts * p.time_base) for p in c.demux(c.streams.video[0]) if p.size]
    assert stamps[-1] == pytest.approx(0.6, abs=0.001) and len(stamps) == 4
