"""Plain text-to-image sampling (``i2i generate``): diffusers' own pipeline's latents on tiny SD / SDXL pipelines,
and the command on the bundled demo model (offline)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from tiny_sd import one_thread, sd_pipeline, sdxl_pipeline  # noqa: F401  (one_thread: autouse fixture)

from i2i.generate.config import GenerateConfig
from i2i.generate.pipeline import GeneratePipeline


@pytest.mark.parametrize("kind, eta, n", [("sd", 0.0, 2), ("sd", 1.0, 1), ("sdxl", 0.0, 1)])
def test_latents_equal_diffusers_own_pipeline(kind, eta, n):
    base = sd_pipeline(0) if kind == "sd" else sdxl_pipeline(0)
    pipe = GeneratePipeline(base, device="cpu")
    config = GenerateConfig(num_inference_steps=4, guidance_scale=6.0, negative_prompt="low quality", eta=eta)
    ours = pipe("a photo of a red square", config, seed=3, num_images=n)
    base.scheduler = pipe.make_scheduler()
    theirs = base("a photo of a red square", negative_prompt="low quality", num_inference_steps=4,
                  guidance_scale=6.0, eta=eta, num_images_per_prompt=n, height=32, width=32,
                  generator=torch.Generator("cpu").manual_seed(3), output_type="latent").images
    assert ours.latents.shape == (n, 4, 8, 8) and len(ours.images) == n and ours.images[0].size == (32, 32)
    assert torch.equal(ours.latents, theirs)


def test_demo_model_defaults_and_seeds():
    from i2i.demo.model import demo_model_path

    pipe = GeneratePipeline.from_pretrained(demo_model_path(), device="cpu")
    config = pipe.default_config()
    assert (config.num_inference_steps, config.negative_prompt) == (25, "outline")     # i2i_generate.json
    a = pipe("a red circle", GenerateConfig(num_inference_steps=3, negative_prompt="outline"), seed=1)
    b = pipe("a red circle", GenerateConfig(num_inference_steps=3, negative_prompt="outline"), seed=1)
    c = pipe("a red circle", GenerateConfig(num_inference_steps=3, negative_prompt="outline"), seed=2)
    assert torch.equal(a.latents, b.latents) and not torch.equal(a.latents, c.latents)


def test_generate_command_on_the_demo_model(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("I2I_GENERATE_MODEL", None)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "i2i", "generate", "--prompt", "a red circle", "--prompt",
                           "a blue square", "--steps", "10", "--out", str(out), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records.pop()["kind"] == "summary"
    assert [r["prompt"] for r in records] == ["a red circle", "a blue square"]
    assert [r["seed"] for r in records] == [0, 1]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000-a-red-circle.png", "001-a-blue-square.png"]
    from PIL import Image

    from i2i.shapes import read_object

    image = Image.open(out / names[0])
    assert image.size == (64, 64)
    reading = read_object(image)           # the demo model may draw on a tinted ground
    assert (reading.shape, reading.colour) == ("circle", "red")


def test_generate_job_file_and_usage_errors(tmp_path):
    from typer.testing import CliRunner

    from i2i.cli.app import app
    from i2i.diffusion.jobs import build_jobs
    from i2i.generate.config import GENERATE_JOBS

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a red circle", "seed": 7}\n{"prompt": "a blue square", "num_images": 2}\n')
    built = build_jobs(GENERATE_JOBS, ["a green triangle"], {}, jobs, {"num_images": 1}, 0)
    assert [(j["name"], j["seed"], j["num_images"]) for j in built] == [
        ("000-a-green-triangle", 0, 1), ("001-a-red-circle", 7, 1), ("002-a-blue-square", 2, 2)]
    runner = CliRunner()
    assert runner.invoke(app, ["generate", "--prompt", "x", "--num-images", "0"]).exit_code == 2
    assert runner.invoke(app, ["generate", "--prompt", "x", "--steps", "0"]).exit_code == 2
    jobs.write_text('{"prompt": "a red circle", "condition": "x.png"}\n')
    result = runner.invoke(app, ["generate", "--jobs", str(jobs)])
    assert result.exit_code == 2 and "unknown key(s) condition" in result.output
    # --score on plain sampling needs CLIP only (there is no condition for the structure score, and no --dino)
    result = runner.invoke(app, ["generate", "--prompt", "x", "--score", "--clip", str(tmp_path / "no-clip"),
                                 "--out", str(tmp_path / "o.png")])
    assert result.exit_code == 4 and "no-clip" in result.output and "dino" not in result.output.lower()
    result = runner.invoke(app, ["generate", "--prompt", "x", "--dino", str(tmp_path / "no-dino")])
    assert result.exit_code == 2 and "No such option: --dino" in result.output
    help_text = runner.invoke(app, ["generate", "--help"]).output
    assert "clip_score" in help_text and "self_sim" not in help_text and "--dino" not in help_text
    result = runner.invoke(app, ["generate", "--prompt", "x", "--out", str(tmp_path / "g.mp4")])
    assert result.exit_code == 2 and "names a video file" in result.output and not (tmp_path / "g.mp4").exists()
