"""The VAE side of a diffusion model: decoding latents within a memory budget, and a replacement VAE.

At SDXL's 1024 px the float32 VAE decode, not the UNet, sets the peak memory of a guided run: the decoder's last
blocks hold 128-channel activations at full resolution. Two ways down, both here:

- **Tiled decode** (``vae_decode="tiled"``, or ``"auto"`` on a GPU above 768 px): the latent is decoded in
  overlapping 512 px tiles that are blended at their seams (diffusers' ``AutoencoderKL.tiled_decode``, with its
  tile size set to 512 px: SDXL's VAE config says 1024, which would not tile a 1024 px image at all). The
  decoder runs on 2.25 times the pixels at 1024 px; the blend can leave faint seams.
- **A replacement VAE** (``vae=FOLDER|HUB_ID|FILE``), e.g. an fp16-safe SDXL VAE: it runs at the pipeline's
  precision instead of float32.

Images are always decoded one at a time (the VAE has no batch coupling, so this changes nothing but the peak).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from i2i.errors import CheckpointError, UsageError

VAE_DECODE_MODES = ("auto", "full", "tiled")
TILE_PX = 512               # tile side in pixels (tiles overlap by a quarter, as in diffusers)
AUTO_TILE_ABOVE_PX = 768    # "auto" tiles on a GPU when the image is larger than this on either side


def check_vae_decode(mode: str) -> str:
    if mode not in VAE_DECODE_MODES:
        raise UsageError(f"--vae-decode must be one of {', '.join(VAE_DECODE_MODES)}, not {mode!r}")
    return mode


def use_tiles(mode: str, height: int, width: int, device: torch.device) -> bool:
    """Whether a ``height`` x ``width`` image is decoded in tiles: always for ``"tiled"``, never for ``"full"``,
    and for ``"auto"`` on a GPU (CUDA/MPS) when the image is larger than 768 px on either side."""
    check_vae_decode(mode)
    if mode == "auto":
        return device.type in ("cuda", "mps") and max(height, width) > AUTO_TILE_ABOVE_PX
    return mode == "tiled"


@contextmanager
def _tile_size(vae, tile_px: int):
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    saved = vae.tile_sample_min_size, vae.tile_latent_min_size
    vae.tile_sample_min_size, vae.tile_latent_min_size = tile_px, tile_px // scale
    try:
        yield
    finally:
        vae.tile_sample_min_size, vae.tile_latent_min_size = saved


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, mode: str = "auto", tile_px: int = TILE_PX) -> torch.Tensor:
    """Images in [-1, 1], float32 ``[N, 3, H, W]``, from scaled latents ``[N, c, h, w]``, one image at a time;
    tiled as :func:`use_tiles` says."""
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    tiled = use_tiles(mode, latents.shape[-2] * scale, latents.shape[-1] * scale, latents.device)
    z = latents.to(vae.dtype) / vae.config.scaling_factor
    out = []
    for one in z.split(1):
        if tiled:
            with _tile_size(vae, tile_px):
                out.append(vae.tiled_decode(one).sample.float())
        else:
            out.append(vae.decode(one).sample.float())
    return torch.cat(out)


def check_vae_fits(vae, base, name) -> None:
    """:class:`~i2i.errors.CheckpointError` unless ``vae`` can replace ``base``'s VAE: latents of as many channels
    as the UNet denoises, on the same grid (the UNet was trained at one pixels-per-latent scale; another would
    silently change every output's size)."""
    unet_channels = base.unet.config.out_channels
    if vae.config.latent_channels != unet_channels:
        raise CheckpointError(f"--vae {name}: its latents have {vae.config.latent_channels} channels, but the "
                              f"model's UNet denoises {unet_channels}-channel latents (a VAE of another model family?)")
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    own = 2 ** (len(base.vae.config.block_out_channels) - 1) if getattr(base, "vae", None) is not None else scale
    if scale != own:
        raise CheckpointError(f"--vae {name}: it maps {scale} pixels to a latent, the model's own VAE {own}")


def check_vae_spec(spec: str | os.PathLike) -> None:
    """Fail early (before any model is loaded) when ``spec`` names a local VAE file or folder that is missing."""
    from i2i.diffusion.loading import is_single_file

    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.exists():
        return
    if is_single_file(text) or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise CheckpointError(f"--vae {text}: no such file or folder")


def load_vae(spec: str | os.PathLike, config: str | None = None, like=None):
    """An ``AutoencoderKL`` from a diffusers folder (the VAE's own, or a pipeline folder with a ``vae/``
    subfolder), a hub id (from the local cache when ``HF_HUB_OFFLINE`` is set) or a single ``.safetensors`` /
    ``.ckpt`` file, described by ``config`` (a folder or hub id), else by the config of ``like`` (the model's own
    VAE: a replacement has its architecture), else by diffusers' default (fetched from the hub)."""
    from diffusers import AutoencoderKL

    from i2i.diffusion.loading import is_single_file, offline
    from i2i.hub import hub_reachable

    check_vae_spec(spec)
    path = Path(os.fspath(spec)).expanduser()
    try:
        if is_single_file(spec):
            if config is None and like is not None:
                with tempfile.TemporaryDirectory() as described:
                    like.save_config(described)
                    return AutoencoderKL.from_single_file(str(path), config=described, local_files_only=True)
            local = offline() or (config is None and not hub_reachable())
            return AutoencoderKL.from_single_file(str(path), config=config, local_files_only=local)
        if path.is_dir():
            sub = "vae" if (path / "vae" / "config.json").is_file() else None
            if sub is None and not (path / "config.json").is_file():
                raise CheckpointError(f"--vae {spec}: not a diffusers VAE folder (no config.json or vae/config.json)")
            return AutoencoderKL.from_pretrained(str(path), subfolder=sub)
        from i2i.hub import download_hint, require_weights

        cached = require_weights(str(spec), "config.json", "--vae", download_hint(str(spec), "--vae"))
        return AutoencoderKL.from_pretrained(str(spec), local_files_only=cached or offline())
    except CheckpointError:
        raise
    except Exception as exc:
        hint = " (offline: HF_HUB_OFFLINE is set and it is not in the local cache)" if offline() else ""
        raise CheckpointError(f"--vae {spec}: cannot load this VAE{hint}: {type(exc).__name__}: {exc}") from exc
