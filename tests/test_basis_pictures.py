"""Pictures of the semantic bases (`i2i freecontrol bases --show`, :mod:`i2i.freecontrol.basis_pictures`)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.errors import EXIT_OUTPUT, EXIT_USAGE
from i2i.freecontrol.basis_pictures import coordinates_to_rgb, picture_grid, token_grid

from test_freecontrol_cli import SQUARE


def test_coordinates_become_rgb_on_the_token_grid():
    coords = torch.rand(6 * 4, 5)
    coords[:, 0] = torch.linspace(0, 1, 24)
    rgb, grid = coordinates_to_rgb(coords, (12, 8))             # 12 x 8 latent, 6 x 4 tokens
    assert grid == (6, 4) and rgb.shape == (6, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255          # component 1 is red, row-major positions
    assert np.array_equal(rgb.reshape(-1, 3)[:, 1], (coords[:, 1] * 255).round().to(torch.uint8).numpy())
    two, _ = coordinates_to_rgb(torch.ones(4, 2), (2, 2))         # fewer than 3 components: blue stays 0
    assert (two[..., 2] == 0).all() and (two[..., :2] == 255).all()
    assert token_grid(9 * 5, (17, 9)) == (9, 5)                   # odd latents round up
    with pytest.raises(ValueError):
        token_grid(7, (8, 8))


def test_grid_lays_pictures_out_in_rows():
    pictures = [Image.new("RGB", (10, 6), (i * 40, 0, 0)) for i in range(5)]
    sheet = picture_grid(pictures, columns=3, gap=2)
    assert sheet.size == (3 * 10 + 2 * 2, 2 * 6 + 2)
    assert sheet.getpixel((12 + 1, 1)) == (40, 0, 0) and sheet.getpixel((33, 13)) == (255, 255, 255)


def test_bases_show_writes_a_picture_per_analysed_timestep_on_the_demo_model(tmp_path):
    out = tmp_path / "pictures"
    args = ["freecontrol", "bases", "--concept", "square", "--show", str(SQUARE), "--inversion-prompt",
            "an outline of a square", "--seed-images", "2", "--bases-steps", "10", "--inversion-steps", "10",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--json", "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    *per_step, summary = records
    assert len(per_step) == summary["timesteps"] == 6              # 60 % of 10 analysis steps
    assert [r["timestep"] for r in per_step] == sorted((r["timestep"] for r in per_step), reverse=True)
    assert summary["tokens"] == [16, 16]          # demo model: 64 px, 32 x 32 latent, its feature block up_blocks.2
    for record in per_step:
        picture = np.asarray(Image.open(record["image"]))
        assert picture.shape == (64, 64, 3)                        # the token grid enlarged to the image size
        assert picture.min() == 0 and picture.max() == 255         # each channel min-max normalised
    grid = Image.open(summary["grid"])
    assert grid.size == (3 * 64 + 2 * 2, 2 * 64 + 2)
    assert {p.name for p in out.iterdir()} == {"square_sketch_grid.png",
                                               *(f"square_sketch_t{r['timestep']:04d}.png" for r in per_step)}
    again = CliRunner().invoke(app, args)
    assert again.exit_code == EXIT_OUTPUT and "--overwrite" in again.output
    assert CliRunner().invoke(app, [*args[:-4], "--out", str(tmp_path / "x.safetensors")]).exit_code == EXIT_USAGE
