"""VAE decode within a memory budget (one image at a time, tiles) and a replacement VAE (--vae)."""

import pytest
import torch
from tiny_sd import one_thread, sd_pipeline  # noqa: F401  (one_thread: autouse fixture)
from tiny_sd import vae as tiny_vae
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.diffusion.model import DiffusionModel
from i2i.diffusion.vae import decode_latents, load_vae, use_tiles
from i2i.errors import CheckpointError, UsageError


def test_auto_tiles_only_large_images_on_a_gpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_tiles("auto", 1024, 1024, cuda) and use_tiles("auto", 512, 1024, cuda)
    assert not use_tiles("auto", 768, 768, cuda) and not use_tiles("auto", 1024, 1024, cpu)
    assert use_tiles("tiled", 64, 64, cpu) and not use_tiles("full", 2048, 2048, cuda)
    with pytest.raises(UsageError, match="--vae-decode"):
        use_tiles("sliced", 64, 64, cpu)


def test_one_image_at_a_time_equals_the_batched_decode():
    torch.manual_seed(0)
    vae = tiny_vae().eval()
    z = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        batched = vae.decode(z / vae.config.scaling_factor).sample
    assert torch.allclose(decode_latents(vae, z, "full"), batched, atol=1e-5)


def test_tiled_decode_uses_tiles_of_the_given_size_and_restores_the_vae(monkeypatch):
    torch.manual_seed(0)
    vae = tiny_vae().eval()                      # 4x downsampling: 16 px tiles are 4x4 latents
    seen = []
    real = vae.decoder.forward

    def spy(z, *args, **kwargs):
        seen.append(tuple(z.shape[-2:]))
        return real(z, *args, **kwargs)

    monkeypatch.setattr(vae.decoder, "forward", spy)
    z = torch.randn(2, 4, 12, 12)                # a 48 px image
    before = (vae.tile_sample_min_size, vae.tile_latent_min_size)
    tiled = decode_latents(vae, z, "tiled", tile_px=16)
    assert (vae.tile_sample_min_size, vae.tile_latent_min_size) == before
    assert tiled.shape == (2, 3, 48, 48) and torch.isfinite(tiled).all()
    assert seen and max(seen) == (4, 4) and len(seen) == 2 * 16   # 4 x 4 tiles of 4 x 4 latents, per image
    seen.clear()
    full = decode_latents(vae, z, "full")
    assert seen == [(12, 12), (12, 12)]
    # seams are blended, away from them the tiles see what the full decode sees only up to the receptive field
    assert (tiled - full).abs().mean() < (full.abs().mean())


def test_a_replacement_vae_is_used_at_the_pipeline_precision_and_keys_the_cache(tmp_path):
    torch.manual_seed(1)
    other = tiny_vae()
    other.save_pretrained(tmp_path / "vae")
    loaded = load_vae(tmp_path / "vae")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), other.state_dict().values()))
    plain = DiffusionModel(sd_pipeline(), model_id="tiny", device="cpu")
    swapped = DiffusionModel(sd_pipeline(), model_id="tiny", device="cpu", vae=tmp_path / "vae")
    assert all(torch.equal(a, b) for a, b in zip(swapped.vae.state_dict().values(), other.state_dict().values()))
    assert swapped.vae.dtype == swapped.dtype and swapped.model_id != plain.model_id
    image = swapped.decode(torch.randn(1, 4, 8, 8))[0]
    assert image.size == (32, 32)


def test_missing_vae_is_an_error_before_any_model_loads(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="no such file"):
        load_vae(tmp_path / "nope.safetensors")
    import i2i.diffusion.model as model

    monkeypatch.setattr(model.DiffusionModel, "from_pretrained",
                        classmethod(lambda *a, **k: pytest.fail("the model was loaded")))
    runner = CliRunner()
    for command in (["freecontrol", "--prompt", "a square"], ["ctrlx", "--prompt", "a square", "--structure"]):
        cond = str(tmp_path / "c.png")
        from PIL import Image

        Image.new("RGB", (32, 32), "white").save(cond)
        args = [*command, *(["--condition"] if command[0] == "freecontrol" else []), cond, "--out", str(tmp_path / "o")]
        res = runner.invoke(app, [*args, "--vae", str(tmp_path / "nope.safetensors")])
        assert res.exit_code == 4 and "nope.safetensors" in res.output, res.output
        res = runner.invoke(app, [*args, "--vae-decode", "sliced"])
        assert res.exit_code == 2 and "--vae-decode" in res.output, res.output


def test_a_vae_of_another_latent_shape_is_refused_when_the_model_is_built(tmp_path):
    from diffusers import AutoencoderKL

    def vae(latent_channels=4, blocks=(8, 16, 16)):
        return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * len(blocks),
                             up_block_types=("UpDecoderBlock2D",) * len(blocks), block_out_channels=blocks,
                             layers_per_block=1, latent_channels=latent_channels, norm_num_groups=8)

    with pytest.raises(CheckpointError, match="8 channels.*4-channel latents"):
        DiffusionModel(sd_pipeline(), model_id="tiny", device="cpu", vae=vae(latent_channels=8))
    with pytest.raises(CheckpointError, match="maps 8 pixels to a latent, the model's own VAE 4"):
        DiffusionModel(sd_pipeline(), model_id="tiny", device="cpu", vae=vae(blocks=(8, 16, 16, 16)))


def test_a_single_file_vae_is_described_by_the_models_own_vae_offline(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from tiny_sd import _ldm_vae_key

    import i2i.hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(i2i.hub, "hub_reachable", lambda *a, **k: pytest.fail("the hub was asked"))
    torch.manual_seed(4)
    other = tiny_vae()
    n = len(other.config.block_out_channels)
    ldm = {_ldm_vae_key(k, n): (v[:, :, None, None] if ".mid_block.attentions." in k and v.ndim == 2 else v)
           for k, v in other.state_dict().items()}                  # as single VAE files are published
    save_file({k: v.contiguous() for k, v in ldm.items()}, str(tmp_path / "vae.safetensors"))
    swapped = DiffusionModel(sd_pipeline(), model_id="tiny", device="cpu", vae=tmp_path / "vae.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(swapped.vae.state_dict().values(), other.state_dict().values()))
    save_file({"a": torch.zeros(3)}, str(tmp_path / "not-a-vae.safetensors"))
    with pytest.raises(CheckpointError, match="cannot load this VAE"):
        DiffusionModel(sd_pipeline(), model_id="tiny", device="cpu", vae=tmp_path / "not-a-vae.safetensors")
