"""Semantic bases shipped in a model folder (``i2i_bases/``): found wherever the folder is installed, before the
cache; never part of the folder's identity; a corrupt one is reported and computed instead. And the bundled demo
model's own: found for its default settings and equal to what the analysis computes today."""

import dataclasses
import shutil
import warnings

import pytest
import torch
from tiny_sd import one_thread, save_sd  # noqa: F401  (one_thread: autouse fixture)

from i2i.diffusion.loading import folder_fingerprint
from i2i.errors import UsageError
from i2i.freecontrol.bases import SHIPPED_BASES, compute_bases, ship_bases
from i2i.freecontrol.config import BasesConfig
from i2i.freecontrol.pipeline import FreeControlPipeline

CFG = BasesConfig(num_images=2, num_inference_steps=6, batch_size=2)


def test_one_model_reached_by_two_paths_shares_its_cache_entries(tmp_path, monkeypatch):
    from PIL import Image

    model = save_sd(tmp_path / "tiny-sd")
    (tmp_path / "link").symlink_to(model)
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    first = FreeControlPipeline.from_pretrained(model, device="cpu", cache_dir=cache)
    again = FreeControlPipeline.from_pretrained("link", device="cpu", cache_dir=cache)       # relative, symlink
    assert first.model_id != again.model_id
    condition = Image.new("RGB", (32, 32), (200, 30, 30))
    config = dataclasses.replace(first.default_config(), inversion_steps=20)     # a short inversion
    steps = [951, 451]
    assert not first.invert(condition, "a cat", config, steps).cache_hit
    assert again.invert(condition, "a cat", config, steps).cache_hit
    assert not first.semantic_bases("cat", CFG, 32).cache_hit and again.semantic_bases("cat", CFG, 32).cache_hit
    other = FreeControlPipeline.from_pretrained(save_sd(tmp_path / "other", seed=1), device="cpu", cache_dir=cache)
    assert not other.invert(condition, "a cat", config, steps).cache_hit             # other weights: their own
    assert not other.semantic_bases("cat", CFG, 32).cache_hit


def test_a_folders_bases_hold_wherever_it_is_installed(tmp_path):
    model = save_sd(tmp_path / "tiny-sd")
    before = folder_fingerprint(model)
    maker = FreeControlPipeline.from_pretrained(model, device="cpu", cache_dir=tmp_path / "cache-a")
    path = ship_bases(maker, "cat", CFG, 32)
    assert path.parent == model / SHIPPED_BASES and folder_fingerprint(model) == before
    moved = shutil.copytree(model, tmp_path / "elsewhere" / "model")
    user = FreeControlPipeline.from_pretrained(moved, device="cpu", cache_dir=tmp_path / "cache-b")
    assert user.model_id != maker.model_id and user.weights_id == maker.weights_id
    found = user.semantic_bases("cat", CFG, 32)
    assert found.cache_hit and found.path == moved / SHIPPED_BASES / path.name
    assert not (tmp_path / "cache-b").exists()                      # nothing computed, nothing cached
    computed = FreeControlPipeline.from_pretrained(moved, device="cpu", cache_dir=None)
    assert torch.equal(found.bases, compute_bases(computed, "cat", CFG, 32).bases)
    other = user.semantic_bases("dog", CFG, 32)                       # another concept: computed and cached
    assert not other.cache_hit and other.path.parent == tmp_path / "cache-b" / "bases"
    assert not user.semantic_bases("cat", CFG, 48).cache_hit          # another size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bf16 = FreeControlPipeline.from_pretrained(moved, device="cpu", precision="bf16", cache_dir=tmp_path / "c")
    assert not bf16.semantic_bases("cat", CFG, 32).cache_hit          # other weights' precision: not these bases


def test_a_corrupt_shipped_file_is_reported_and_computed(tmp_path):
    model = save_sd(tmp_path / "tiny-sd")
    pipe = FreeControlPipeline.from_pretrained(model, device="cpu", cache_dir=tmp_path / "cache")
    path = ship_bases(pipe, "cat", CFG, 32)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.warns(UserWarning, match="corrupt or stale; computing the bases instead"):
        result = pipe.semantic_bases("cat", CFG, 32)
    assert not result.cache_hit and result.path.parent == tmp_path / "cache" / "bases"


def test_only_a_folder_ships_bases(tmp_path):
    from tiny_sd import sd_pipeline

    with pytest.raises(UsageError, match="model folder"):
        ship_bases(FreeControlPipeline(sd_pipeline(0), device="cpu", cache_dir=tmp_path), "cat", CFG, 32)


def test_the_demo_models_bases_are_found_for_its_defaults_and_equal_a_fresh_analysis(tmp_path):
    """The files in the bundled folder stay valid only while the weights, the recommended settings and the
    analysis code are unchanged: the key covers the first two, a fresh analysis of one concept the third."""
    from i2i.demo.model import demo_model_path

    pipe = FreeControlPipeline.from_pretrained(demo_model_path(), device="cpu", cache_dir=tmp_path)
    shipped = {c: pipe.semantic_bases(c) for c in ("circle", "square", "triangle")}
    assert all(b.cache_hit and b.path.parent.name == SHIPPED_BASES for b in shipped.values())
    assert len(list((demo_model_path() / SHIPPED_BASES).iterdir())) == 3 and not (tmp_path / "bases").exists()
    fresh = compute_bases(pipe, "circle", pipe.default_config().bases, pipe.default_size)
    assert torch.equal(fresh.timesteps, shipped["circle"].timesteps)
    assert torch.allclose(fresh.means, shipped["circle"].means, atol=1e-4)
    cos = (fresh.bases * shipped["circle"].bases).sum(-1).abs()          # unit directions, up to sign
    assert cos.min() > 0.99
