"""FreeControl with an appearance image (tiny SD pipeline built in code, CPU, offline): the energy's reference
vectors are the appearance image's, its inversion is cached by the image, the siblings are not run for it, and
the CLI refuses a missing appearance file before loading a model."""

import dataclasses

import pytest
import torch
from tiny_sd import one_thread, save_sd, sd_pipeline  # noqa: F401  (one_thread: autouse fixture)
from typer.testing import CliRunner

from i2i.freecontrol import guidance as G
from i2i.freecontrol.config import BasesConfig, FreeControlConfig
from i2i.freecontrol.features import FeatureStore, recording, run_until_recorded
from i2i.freecontrol.pipeline import FreeControlPipeline
from i2i.shapes import ShapeSpec, render

PROMPT = "a square"
SMALL = FreeControlConfig(num_inference_steps=6, inversion_steps=6, negative_prompt="worst quality, low quality",
                          appearance_weight=1.0, bases=BasesConfig(num_images=2, num_inference_steps=6, batch_size=2))


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return FreeControlPipeline(sd_pipeline(0), device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def sketch():
    return render(ShapeSpec("square", "red", 0.3, 0.34, 0.2), 32, style="outline")


def look(colour):
    return render(ShapeSpec("circle", colour, 0.5, 0.5, 0.34), 32)


def run(pipe, sketch, **kwargs):
    return pipe(PROMPT, sketch, SMALL, inversion_prompt="an outline of a square", seed=3, **kwargs)


def spy_references(monkeypatch):
    seen = []
    original = G.appearance_energy

    def spy(vectors_gen, vectors_ref):
        seen.append(vectors_ref.detach().clone())
        return original(vectors_gen, vectors_ref)

    monkeypatch.setattr(G, "appearance_energy", spy)
    return seen


def expected_references(pipe, out, layers):
    """The appearance vectors of the appearance image at each guided timestep, computed here from its inverted
    latents with the library's primitives (keys of a prompt-conditioned UNet pass)."""
    text = pipe.encode_text([PROMPT], (32, 32)).positive()
    store = FeatureStore()
    refs = []
    with recording(pipe.unet, store, layers), torch.no_grad():
        for i, t in enumerate(out.timesteps[:out.guided_steps]):
            if G.warmup_weight(i, SMALL.structure_weight, SMALL.warmup_steps) == 0:
                continue
            store.clear()
            run_until_recorded(pipe.unet, store, out.appearance_trajectory.at(t), t, **text.unet_kwargs())
            for j, name in enumerate(layers):
                mean, basis = out.bases.at(t, j)
                coords = G.minmax_normalize(G.semantic_coordinates(store.keys[name], mean, basis, SMALL.n_components))
                refs.append(G.appearance_vectors(store.keys[name].float(), coords, SMALL.appearance_components,
                                                 SMALL.appearance_threshold))
    return refs


def test_the_energy_sees_the_appearance_images_vectors(sd, sketch, monkeypatch):
    seen = spy_references(monkeypatch)
    out = run(sd, sketch, appearance=look("blue"), unguided=False)
    expected = expected_references(sd, out, list(out.bases.layers))
    assert len(seen) == len(expected) > 0
    for got, want in zip(seen, expected):
        assert torch.allclose(got, want, atol=1e-5)
    seen.clear()
    run(sd, sketch)                                   # no appearance image: the siblings' vectors instead
    assert len(seen) == len(expected)
    assert not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(seen, expected))


def test_appearance_inversion_is_cached_by_the_image(sd, sketch):
    first = run(sd, sketch, appearance=look("green"), unguided=False)
    again = run(sd, sketch, appearance=look("green"), unguided=False)
    other = run(sd, sketch, appearance=look("yellow"), unguided=False)
    assert not first.appearance_trajectory.cache_hit and again.appearance_trajectory.cache_hit
    assert again.appearance_trajectory.cache_path == first.appearance_trajectory.cache_path
    assert not other.appearance_trajectory.cache_hit
    assert other.appearance_trajectory.cache_path != first.appearance_trajectory.cache_path
    assert torch.equal(again.latents, first.latents)
    assert not torch.equal(other.latents, first.latents)


def test_no_sibling_runs_for_the_appearance_energy(sd, sketch, monkeypatch):
    rows = []
    original = FreeControlPipeline.unet_forward

    def spy(self, latents, t, cond):
        rows.append(latents.shape[0])
        return original(self, latents, t, cond)

    monkeypatch.setattr(FreeControlPipeline, "unet_forward", spy)
    pipe = FreeControlPipeline(sd.base, device="cpu", cache_dir=sd.cache_dir, one_call=False)
    run(pipe, sketch, appearance=look("blue"), unguided=False)
    assert max(rows) == 2                             # [guided | negative; guided | prompt] at most
    rows.clear()
    run(pipe, sketch, unguided=False)
    assert max(rows) == 3                             # the siblings' rows join the guided steps


def test_appearance_is_ignored_with_a_warning_when_guidance_is_off(sd, sketch):
    cfg = dataclasses.replace(SMALL, appearance_weight=0.0)
    with pytest.warns(UserWarning, match="appearance image is ignored"):
        out = sd(PROMPT, sketch, cfg, seed=3, appearance=look("blue"))
    assert out.appearance_trajectory is None


def test_cli_missing_appearance_file_fails_before_loading(tmp_path, monkeypatch):
    from i2i.cli.app import app
    from i2i.freecontrol import pipeline

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(pipeline.FreeControlPipeline, "from_pretrained", no_load)
    sketch = tmp_path / "sketch.png"
    render(ShapeSpec("square", "red", 0.3, 0.34, 0.2), 32, style="outline").save(sketch)
    res = CliRunner().invoke(app, ["freecontrol", "--prompt", PROMPT, "--condition", str(sketch), "--appearance",
                                   str(tmp_path / "missing.png"), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 3 and "missing.png" in res.output and "no such file" in res.output
    (tmp_path / "bad.png").write_bytes(b"not an image")
    res = CliRunner().invoke(app, ["freecontrol", "--prompt", PROMPT, "--condition", str(sketch), "--appearance",
                                   str(tmp_path / "bad.png"), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 3 and "bad.png" in res.output


def test_cli_appearance_end_to_end(tmp_path):
    from i2i.cli.app import app

    model = save_sd(tmp_path / "tiny-sd")
    sketch, colour = tmp_path / "sketch.png", tmp_path / "blue.png"
    render(ShapeSpec("square", "red", 0.3, 0.34, 0.2), 32, style="outline").save(sketch)
    look("blue").save(colour)
    res = CliRunner().invoke(app, ["freecontrol", "--prompt", PROMPT, "--condition", str(sketch), "--appearance",
                                   str(colour), "--model", str(model), "--steps", "6", "--inversion-steps", "6",
                                   "--seed-images", "2", "--bases-steps", "6", "--cache-dir", str(tmp_path / "c"),
                                   "--out", str(tmp_path / "o"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert '"appearance": "' in res.stdout and len(list((tmp_path / "o").glob("*.png"))) == 1
