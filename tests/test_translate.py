"""Translation: original sizes kept, batching equals one-at-a-time, bad files skipped, tiles blend seamlessly."""

import json

import pytest
import torch
from PIL import Image
from torch import nn

from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.networks import define_G
from i2i.cyclegan.translator import (TranslateConfig, blend_ramp, pad_to_multiple, tile_starts, translate_images,
                                     translate_pil, translate_tensor)
from i2i.errors import OutputError
from i2i.images import expand_inputs, image_to_tensor
from i2i.progress import Reporter

CFG = GeneratorConfig(arch="resnet_6blocks", ngf=8)


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return define_G(CFG).eval()


def noise_image(w, h, seed=0, mode="RGB"):
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (h, w, 3 if mode == "RGB" else 1), generator=g, dtype=torch.uint8).numpy()
    return Image.fromarray(arr if mode == "RGB" else arr[:, :, 0], mode=mode)


def test_odd_size_is_kept(gen):
    out = translate_pil(gen, CFG, noise_image(97, 131), "cpu")
    assert out.size == (97, 131) and out.mode == "RGB"


def test_unet_odd_size_is_kept():
    cfg = GeneratorConfig(arch="unet_128", ngf=4)
    out = translate_pil(define_G(cfg).eval(), cfg, noise_image(50, 37), "cpu")
    assert out.size == (50, 37)


def test_pad_to_multiple_reflects_and_replicates():
    x = torch.arange(45.0).reshape(1, 1, 5, 9)
    y = pad_to_multiple(x, 4)
    assert y.shape == (1, 1, 8, 12)
    assert torch.equal(y[..., :5, :9], x)
    assert y[0, 0, 0, 9] == x[0, 0, 0, 7] and y[0, 0, 5, 0] == x[0, 0, 3, 0]   # reflected
    tiny = torch.ones(1, 1, 1, 3)
    assert pad_to_multiple(tiny, 4).shape == (1, 1, 8, 8)           # at least 8 a side; too small to reflect


def test_outputs_quantised_as_the_reference_saves_them(gen, tmp_path):
    """The reference's tensor2im: (y + 1) / 2 * 255 in float32, truncated (not rounded), so a reference
    checkpoint's files equal its test script's to the grey level (rounding differed by 1 in about half)."""
    import numpy as np

    img = noise_image(40, 24, seed=3)
    img.save(tmp_path / "x.png")
    with torch.inference_mode():
        y = gen(image_to_tensor(img)[None])[0].float().numpy()
    expected = ((np.transpose(y, (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)
    assert np.array_equal(np.asarray(translate_pil(gen, CFG, img, "cpu")), expected)
    res = translate_images(expand_inputs([tmp_path / "x.png"]), gen, CFG, tmp_path / "out",
                           TranslateConfig(num_workers=0))
    assert np.array_equal(np.asarray(Image.open(res.ok[0])), expected)


@pytest.mark.parametrize("size", [(1, 300), (300, 1), (3, 5), (1, 1)])
def test_thin_and_tiny_images_translate(gen, size):
    assert translate_pil(gen, CFG, noise_image(*size), "cpu").size == size
    tiled = translate_tensor(gen, CFG, torch.rand(1, 3, size[1], size[0]) * 2 - 1, torch.device("cpu"), tile=64)
    assert tiled.shape[-2:] == (size[1], size[0])


def test_batched_equals_single(gen, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    imgs = [noise_image(40, 28, seed=i) for i in range(5)] + [noise_image(33, 21, seed=9)]
    for i, img in enumerate(imgs):
        img.save(src / f"{i}.png")
    res = translate_images(expand_inputs([src]), gen, CFG, tmp_path / "out", TranslateConfig(batch_size=4,
                                                                                           num_workers=0))
    assert len(res.ok) == 6 and not res.failed
    for i, img in enumerate(imgs):
        single = translate_pil(gen, CFG, img, "cpu")
        batched = Image.open(tmp_path / "out" / f"{i}.png")
        assert batched.size == img.size
        diff = (image_to_tensor(single) - image_to_tensor(batched)).abs().max()
        assert diff <= 2 / 127.5   # at most one 8-bit step apart (float reduction order differs by batch)


def test_bad_files_skipped_and_structure_kept(gen, tmp_path):
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    noise_image(20, 24).save(src / "a.png")
    noise_image(30, 18).save(src / "sub" / "deeper" / "b.jpg")
    (src / "sub" / "broken.png").write_bytes(b"not an image at all")
    (src / "empty.png").write_bytes(b"")
    good = src / "c.png"
    noise_image(64, 64).save(good)
    good.write_bytes(good.read_bytes()[:200])                       # truncated PNG
    res = translate_images(expand_inputs([src]), gen, CFG, tmp_path / "out",
                           TranslateConfig(num_workers=0))
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in res.ok) == ["a.png", "sub/deeper/b.png"]
    assert sorted(f.rsplit("/", 1)[-1] for f, _ in res.failed) == ["broken.png", "c.png", "empty.png"]
    assert Image.open(tmp_path / "out" / "sub" / "deeper" / "b.png").size == (30, 18)
    leftovers = [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert sorted(leftovers) == ["a.png", "b.png"]                   # no partial or temp files


def test_existing_outputs_kept_unless_overwrite(gen, tmp_path):
    noise_image(16, 16).save(tmp_path / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.png").write_bytes(b"precious")
    items = expand_inputs([tmp_path / "x.png"])
    alone = translate_images(items, gen, CFG, out, TranslateConfig(num_workers=0))
    error = alone.single_error(len(items))                       # the only item: a job raises its own error
    assert isinstance(error, OutputError) and "already exists" in str(error) and not alone.ok
    assert (out / "x.png").read_bytes() == b"precious"
    noise_image(16, 16).save(tmp_path / "y.png")                 # with another item: reported, the other written
    res = translate_images(expand_inputs([tmp_path / "x.png", tmp_path / "y.png"]), gen, CFG, out,
                           TranslateConfig(num_workers=0))
    assert [p.name for p in res.ok] == ["y.png"] and "already exists" in res.failed[0][1]
    assert (out / "x.png").read_bytes() == b"precious"
    res = translate_images(items, gen, CFG, out, TranslateConfig(num_workers=0, overwrite=True))
    assert res.ok and Image.open(out / "x.png").size == (16, 16)


def test_an_output_written_meanwhile_by_another_run_counts_as_skipped(gen, tmp_path, monkeypatch):
    """Two runs of one job with --skip-existing (a scheduler requeued it while it ran): an output the other run
    wrote after this run's start is skipped, not a failure."""
    import i2i.cyclegan.translator as translator

    for name in ("x", "y"):
        noise_image(16, 16).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    real = translator.save_image

    def other_run_first(picture, target, overwrite=False):
        if target.name == "x.png":
            real(picture, target)                            # the other run's copy lands first
        return real(picture, target, overwrite=overwrite)

    monkeypatch.setattr(translator, "save_image", other_run_first)
    items = expand_inputs([tmp_path / "x.png", tmp_path / "y.png"])
    res = translate_images(items, gen, CFG, out, TranslateConfig(num_workers=0, skip_existing=True))
    assert not res.failed and [p.name for p in res.skipped] == ["x.png"] and [p.name for p in res.ok] == ["y.png"]
    (out / "x.png").unlink()
    (out / "y.png").unlink()
    res = translate_images(items, gen, CFG, out, TranslateConfig(num_workers=0))     # without the flag: a failure
    assert [p for p, _ in res.failed] == [str(tmp_path / "x.png")] and "already exists" in res.failed[0][1]


def test_worker_prefetch_gives_same_outputs(gen, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(7):
        noise_image(24, 24, seed=i).save(src / f"{i}.png")
    (src / "bad.png").write_bytes(b"nope")
    a = translate_images(expand_inputs([src]), gen, CFG, tmp_path / "a", TranslateConfig(num_workers=0))
    b = translate_images(expand_inputs([src]), gen, CFG, tmp_path / "b", TranslateConfig(num_workers=2))
    assert len(a.ok) == len(b.ok) == 7 and len(a.failed) == len(b.failed) == 1
    for i in range(7):
        assert (tmp_path / "a" / f"{i}.png").read_bytes() == (tmp_path / "b" / f"{i}.png").read_bytes()


def test_json_lines(gen, tmp_path, capsys):
    noise_image(12, 20).save(tmp_path / "x.png")
    (tmp_path / "y.png").write_bytes(b"")
    translate_images(expand_inputs([tmp_path / "x.png", tmp_path / "y.png"]), gen, CFG, tmp_path / "out",
                     TranslateConfig(num_workers=0), reporter=Reporter(quiet=True, json_mode=True))
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_status = {r["status"]: r for r in records}
    assert by_status["ok"]["width"] == 12 and by_status["ok"]["height"] == 20
    assert by_status["error"]["input"].endswith("y.png")


def test_grayscale_generator(tmp_path):
    cfg = GeneratorConfig(arch="resnet_6blocks", ngf=4, input_nc=1, output_nc=1)
    noise_image(21, 19).save(tmp_path / "rgb.png")                  # RGB input converted to L
    res = translate_images(expand_inputs([tmp_path / "rgb.png"]), define_G(cfg).eval(), cfg, tmp_path / "out",
                           TranslateConfig(num_workers=0))
    out = Image.open(res.ok[0])
    assert out.mode == "L" and out.size == (21, 19)


def test_tile_layout_covers_image():
    assert tile_starts(100, 40, 10) == [0, 30, 60]
    assert tile_starts(30, 40, 10) == [0]
    for length, tile, overlap in [(100, 40, 10), (257, 64, 16), (64, 64, 8), (65, 64, 8)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + min(tile, length) == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    w = blend_ramp(8, 4, True, False)
    assert torch.allclose(w, torch.tensor([0.125, 0.375, 0.625, 0.875, 1, 1, 1, 1]))


class _PixelNet(nn.Module):
    """A per-pixel function: tiled translation must reproduce it exactly (the blend weights sum to 1)."""

    def forward(self, x):
        return torch.tanh(2 * x + 0.3)


def test_tiles_blend_exactly_for_a_pixelwise_net():
    x = image_to_tensor(noise_image(150, 97))[None]
    whole = translate_tensor(_PixelNet(), CFG, x, torch.device("cpu"))
    tiled = translate_tensor(_PixelNet(), CFG, x, torch.device("cpu"), tile=48, tile_overlap=16)
    assert tiled.shape == whole.shape == (1, 3, 97, 150)
    assert torch.allclose(tiled, whole, atol=1e-6)


def test_tiling_a_real_generator_is_close_and_sized(gen):
    img = noise_image(120, 88, seed=3).resize((30, 22)).resize((120, 88))   # smooth content
    whole = translate_pil(gen, CFG, img, "cpu")
    tiled = translate_pil(gen, CFG, img, "cpu", tile=64, tile_overlap=24)
    assert tiled.size == whole.size == (120, 88)
    assert (image_to_tensor(tiled) - image_to_tensor(whole)).abs().mean() < 0.1


def test_unset_batch_size_and_workers_follow_the_device(monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    cpu = TranslateConfig().for_device(torch.device("cpu"))
    assert (cpu.batch_size, cpu.num_workers) == (1, 0)           # measured faster on a 2-core CPU
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert TranslateConfig().for_device(torch.device("cpu")).num_workers == 2
    gpu = TranslateConfig().for_device(torch.device("cuda"))
    assert (gpu.batch_size, gpu.num_workers) == (4, 2)
    given = TranslateConfig(batch_size=8, num_workers=3).for_device(torch.device("cpu"))
    assert (given.batch_size, given.num_workers) == (8, 3)       # given values are kept


class _SizeProbe(nn.Module):
    """Records the spatial size it is given; outputs a horizontal ramp, so the resizing back can be checked."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        ramp = torch.linspace(-1, 1, x.shape[-1]).expand(x.shape[0], x.shape[1], x.shape[2], -1)
        return ramp.clone()


def test_size_works_at_the_given_scale_and_returns_the_input_size(tmp_path):
    probe = _SizeProbe()
    out = translate_pil(probe, CFG, noise_image(128, 96), "cpu", size=32)
    assert probe.seen == [(32, 44)] and out.size == (128, 96)       # 96 -> 32 on the shorter side, 4-multiple
    left, right = image_to_tensor(out)[:, :, :8].mean(), image_to_tensor(out)[:, :, -8:].mean()
    assert left < -0.8 and right > 0.8                                 # the ramp, stretched back over 128 px
    probe.seen.clear()
    assert translate_pil(probe, CFG, noise_image(32, 40), "cpu", size=32).size == (32, 40)
    assert probe.seen == [(40, 32)]                                    # already at scale: no resampling
    noise_image(64, 64).save(tmp_path / "a.png")
    res = translate_images(expand_inputs([tmp_path / "a.png"]), _SizeProbe(), CFG, tmp_path / "out",
                           TranslateConfig(size=16, num_workers=0))
    assert [Image.open(p).size for p in res.ok] == [(64, 64)]
    with pytest.raises(Exception, match="--size"):
        TranslateConfig(size=0)


def test_a_full_disk_stops_the_batch_at_the_first_output(gen, tmp_path, monkeypatch):
    import errno

    import i2i.cyclegan.translator as translator

    for name in ("x", "y", "z"):
        noise_image(16, 16).save(tmp_path / f"{name}.png")
    tried = []

    def no_space(picture, target, overwrite=False):
        tried.append(target.name)
        raise OutputError(f"{target}: cannot write (No space left on device)") from OSError(errno.ENOSPC, "full")

    monkeypatch.setattr(translator, "save_image", no_space)
    items = expand_inputs([tmp_path / f"{name}.png" for name in ("x", "y", "z")])
    with pytest.raises(OutputError, match="No space left"):
        translate_images(items, gen, CFG, tmp_path / "out", TranslateConfig(num_workers=0, batch_size=1))
    assert tried == ["x.png"]                                  # not computed on for nothing


def test_decoding_workers_leave_a_sigterm_to_the_main_process(gen, tmp_path, monkeypatch):
    """A scheduler's SIGTERM reaches the whole process group; a decoding worker killed by it made the batch fail
    with "DataLoader worker ... is killed" (exit 70, no checkpoint in training) before the main process could stop
    cleanly. Here each worker gets a SIGTERM while decoding: the batch still completes."""
    import os
    import signal

    from i2i.cyclegan import translator

    src = tmp_path / "in"
    src.mkdir()
    for i in range(8):
        noise_image(16, 16, seed=i).save(src / f"{i}.png")
    real = translator._Decoded.__getitem__

    main, sent = os.getpid(), tmp_path / "sent"
    sent.mkdir()

    def getitem(self, i):
        if os.getpid() != main:                     # in a worker process (forked: this patch is there too)
            (sent / str(os.getpid())).touch()
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, i)

    monkeypatch.setattr(translator._Decoded, "__getitem__", getitem)
    res = translate_images(expand_inputs([src]), gen, CFG, tmp_path / "out", TranslateConfig(num_workers=2))
    assert len(res.ok) == 8 and not res.failed
    assert len(list(sent.iterdir())) == 2           # both workers were sent the signal (the patch reached them)
