"""Stage 1 of the demo model's training: the VAE, resumable; and the encoding of the UNet stage's data set."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from i2i.demo.build import build_vae
from i2i.demo.data import sample
from i2i.demo.train_config import VAE_STAGE, DemoTrainConfig, RunFolder, learning_rate, seeded_build, step_generator
from i2i.errors import UsageError
from i2i.images import image_to_tensor

EVAL_OFFSET = 50_000_000          # evaluation images come from indices far from the training ones


def image_batch(indices: range, seed: int, twin_share: float = 0.0) -> tuple[torch.Tensor, list[str], list]:
    samples = [sample(i, seed, twin_share=twin_share) for i in indices]
    return torch.stack([image_to_tensor(s.image) for s in samples]), [s.caption for s in samples], samples


def object_pixels(x: torch.Tensor, threshold: float = 0.08) -> torch.Tensor:
    """``[B, 1, H, W]`` 1.0 where a pixel (in [-1, 1]) is away from its image's background, estimated as the
    median of the border ring."""
    ring = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    background = ring.median(dim=-1).values[..., None, None]
    return ((x - background).abs().amax(dim=1, keepdim=True) > 2 * threshold).float()


def vae_loss(vae: Any, x: torch.Tensor, gen: torch.Generator, cfg: DemoTrainConfig) -> torch.Tensor:
    post = vae.encode(x).latent_dist
    z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(x.device)
    err = vae.decode(z).sample - x
    w = 1.0 + cfg.vae_object_weight * object_pixels(x)
    return (w * err.abs()).mean() + (w * err.square()).mean() + cfg.vae_kl_weight * post.kl().mean()


def load_vae(folder: Path, dev: torch.device) -> Any:
    """The VAE of the pipeline ``folder`` (``init_from``: a fine-tune has no VAE stage), with its scaling factor."""
    from diffusers import AutoencoderKL

    if not (folder / "vae" / "config.json").is_file():
        raise UsageError(f"init_from {folder}: not a pipeline folder (no vae/config.json)")
    return AutoencoderKL.from_pretrained(folder / "vae").to(dev)


def train_vae(run: RunFolder, cfg: DemoTrainConfig, dev: torch.device) -> Any:
    """Stage 1 (resumable); returns the trained VAE with its scaling factor (saved as ``vae/``)."""
    from diffusers import AutoencoderKL

    if (run.path("vae") / "config.json").is_file():
        return AutoencoderKL.from_pretrained(run.path("vae")).to(dev)
    vae = seeded_build(cfg.seed, VAE_STAGE, build_vae).to(dev)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    start = 0
    if (state := run.load("vae.pt")) is not None:
        vae.load_state_dict(state["vae"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
    t0 = time.perf_counter()
    for step in range(start, cfg.vae_steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, cfg.vae_steps, cfg.vae_lr)
        x, _, _ = image_batch(range(step * cfg.vae_batch, (step + 1) * cfg.vae_batch), cfg.seed)
        loss = vae_loss(vae, x.to(dev), step_generator(cfg.seed, VAE_STAGE, step), cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % cfg.checkpoint_every == 0:
            run.save("vae.pt", {"step": step + 1, "vae": vae.state_dict(), "opt": opt.state_dict()})
        if step % 100 == 0:
            run.log({"stage": "vae", "step": step, "loss": round(loss.item(), 5),
                     "sec": round(time.perf_counter() - t0, 1)})
    return finish_vae(run, vae, cfg, dev)


def finish_vae(run: RunFolder, vae: Any, cfg: DemoTrainConfig, dev: torch.device) -> Any:
    """Set the latent scaling factor, check reconstructions with the shape reader, save ``vae/``."""
    from i2i.images import tensor_to_image
    from i2i.shapes import read_shape

    vae.eval()
    with torch.no_grad():
        x, _, samples = image_batch(range(EVAL_OFFSET, EVAL_OFFSET + cfg.vae_eval_images), cfg.seed)
        post = vae.encode(x.to(dev)).latent_dist
        scaling = 1.0 / float(post.mean.std())
        rec = vae.decode(post.mean).sample
    readings = [(s, read_shape(tensor_to_image(r))) for s, r in zip(samples, rec) if s.style == "filled"]
    run.log({"stage": "vae_eval", "scaling_factor": scaling, "recon_l1": float((rec - x.to(dev)).abs().mean()),
             "colour_accuracy": sum(r.colour == s.spec.colour for s, r in readings) / max(len(readings), 1),
             "shape_accuracy": sum(r.shape == s.spec.shape for s, r in readings) / max(len(readings), 1)})
    vae.register_to_config(scaling_factor=scaling)
    vae.save_pretrained(run.path("vae"), safe_serialization=True)
    return vae


def encode_pairs(vae: Any, cfg: DemoTrainConfig, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, list,
                                                                            torch.Tensor]:
    """Latent mean and std ``[P, 2, 4, h, w]``, caption pairs, and each object's coverage of the latent pixels
    ``[P, 2, h, w]`` of the UNet stage's ``pair_count`` pairs."""
    from i2i.demo.data import pair_sample
    from i2i.shapes import render_coverage

    means, stds, captions, cover = [], [], [], []
    with torch.no_grad():
        for start in range(0, cfg.pair_count, 128):
            pairs = [pair_sample(i, cfg.seed + 1) for i in range(start, min(start + 128, cfg.pair_count))]
            x = torch.stack([image_to_tensor(s.image) for pair in pairs for s in pair])
            post = vae.encode(x.to(dev)).latent_dist
            means.append(post.mean.unflatten(0, (-1, 2)))
            stds.append(post.std.unflatten(0, (-1, 2)))
            captions += [[s.caption for s in pair] for pair in pairs]
            alpha = torch.stack([torch.from_numpy(render_coverage(s.spec, s.image.width)) for p in pairs for s in p])
            cover.append(F.adaptive_avg_pool2d(alpha[:, None], post.mean.shape[-2:])[:, 0].unflatten(0, (-1, 2)))
    return torch.cat(means), torch.cat(stds), captions, torch.cat(cover).to(dev)


def encode_dataset(vae: Any, cfg: DemoTrainConfig, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Latent mean and std ``[N, 4, h, w]`` and captions of the UNet stage's images (a pure function of the VAE)."""
    means, stds, captions = [], [], []
    with torch.no_grad():
        for start in range(0, cfg.dataset_size, 256):
            x, caps, _ = image_batch(range(start, min(start + 256, cfg.dataset_size)), cfg.seed + 1,
                                     cfg.twin_share)
            post = vae.encode(x.to(dev)).latent_dist
            means.append(post.mean)
            stds.append(post.std)
            captions += caps
    return torch.cat(means), torch.cat(stds), captions


