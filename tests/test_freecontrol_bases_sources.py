"""Semantic bases from DDIM-inverted images (tiny SD pipeline built in code, CPU, offline): the user's own images
(cache keyed by their content, unreadable files skipped with a message, an empty folder refused) and the
generated seed images inverted (``--from-inverted``)."""

import dataclasses
import json

import pytest
import torch
from tiny_sd import one_thread, save_sd, sd_pipeline, warning_recorder  # noqa: F401  (one_thread: autouse fixture)
from typer.testing import CliRunner

from i2i.errors import InputError, UsageError
from i2i.freecontrol.config import BasesConfig
from i2i.freecontrol.pipeline import FreeControlPipeline
from i2i.shapes import ShapeSpec, render

SMALL = BasesConfig(num_images=2, num_inference_steps=6, batch_size=2, inversion_steps=6,
                    prompt_template="a photo of a {}")


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return FreeControlPipeline(sd_pipeline(0), device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))


def write_squares(folder, colours=("red", "blue")):
    folder.mkdir(parents=True, exist_ok=True)
    for k, colour in enumerate(colours):
        render(ShapeSpec("square", colour, 0.4 + 0.1 * k, 0.5, 0.2), 32).save(folder / f"{k}.png")
    return folder


def from_images(folder):
    return dataclasses.replace(SMALL, source="images", images=str(folder))


def test_bases_from_images_are_cached_by_the_images_content(sd, tmp_path):
    folder = write_squares(tmp_path / "squares")
    first = sd.semantic_bases("square", from_images(folder))
    again = sd.semantic_bases("square", from_images(folder))
    assert not first.cache_hit and again.cache_hit and again.path == first.path
    assert first.info["keys_from"] == "images" and first.info["images"] == ["0.png", "1.png"]
    render(ShapeSpec("square", "green", 0.6, 0.3, 0.25), 32).save(folder / "1.png")       # one image changes
    changed = sd.semantic_bases("square", from_images(folder))
    assert not changed.cache_hit and changed.path != first.path
    assert not torch.allclose(changed.bases, first.bases)
    generated = sd.semantic_bases("square", SMALL)
    assert generated.path != first.path and torch.equal(generated.timesteps, first.timesteps)


def test_unreadable_images_are_skipped_by_name_and_an_empty_folder_is_refused(sd, tmp_path):
    folder = write_squares(tmp_path / "mixed")
    (folder / "notes.png").write_text("not an image")
    reporter = warning_recorder()
    bases = sd.semantic_bases("square", from_images(folder), reporter=reporter)
    assert bases.info["images"] == ["0.png", "1.png"]
    assert any("notes.png" in w for w in reporter.warnings)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no readable image"):
        sd.semantic_bases("square", from_images(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="no readable image"):
        sd.semantic_bases("square", from_images(tmp_path / "bad"), reporter=warning_recorder())
    with pytest.raises(InputError, match="no such folder"):
        sd.semantic_bases("square", from_images(tmp_path / "absent"))
    with pytest.raises(UsageError):
        sd.semantic_bases("square", dataclasses.replace(SMALL, source="images"))


def test_from_inverted_takes_the_keys_from_the_inverted_seed_images(sd):
    generated = sd.semantic_bases("square", SMALL)
    inverted = sd.semantic_bases("square", dataclasses.replace(SMALL, source="inverted"))
    assert inverted.info["keys_from"] == "inverted" and not inverted.cache_hit
    assert inverted.path != generated.path and inverted.bases.shape == generated.bases.shape
    assert not torch.allclose(inverted.means, generated.means)
    assert sd.semantic_bases("square", dataclasses.replace(SMALL, source="inverted")).cache_hit


def test_cli_bases_sources(tmp_path):
    from i2i.cli.app import app

    model = save_sd(tmp_path / "tiny-sd")

    def bases(*args):
        return CliRunner().invoke(app, ["freecontrol", "bases", "--concept", "square", "--model", str(model),
                                        "--cache-dir", str(tmp_path / "c"), "--seed-images", "2", "--bases-steps",
                                        "6", "--inversion-steps", "6", "--json", *map(str, args)])

    res = bases("--from-inverted")
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout.splitlines()[-1])
    assert record["source"] == "inverted" and record["timesteps"] == 4
    folder = write_squares(tmp_path / "mine")
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    res = bases("--images", folder)
    assert res.exit_code == 0, res.output
    assert "broken.png" in res.stderr and json.loads(res.stdout.splitlines()[-1])["source"] == "images"
    (tmp_path / "none").mkdir()
    res = bases("--images", tmp_path / "none")
    assert res.exit_code == 3 and "no readable image" in res.output
    res = bases("--images", folder, "--from-inverted")
    assert res.exit_code == 2 and "exclude" in res.output
