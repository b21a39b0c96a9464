"""DDIM inversion of the condition image, with an on-disk trajectory cache.

The condition is resized to the output size, VAE-encoded (a latent sample with a fixed generator, so the result
is a function of the cache key), and inverted with :class:`~diffusers.DDIMInverseScheduler` over
``inversion_steps`` steps (official: 999) using the inversion prompt and no classifier-free guidance. Only the
latents at the synthesis timesteps are kept: for each one, the inverted latent at the nearest inversion timestep
(with 999 steps every timestep 1..999 is present, so this is exact).

The cache key holds the model identity and dtype, the resized image's pixels, the prompt, the size, the inversion
schedule and the synthesis timesteps (the official cache forgets the model).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from i2i.diffusion.cache import cache_key, entry_lock, load_entry, progress_bar, store_entry
from i2i.images import convert_image

if TYPE_CHECKING:
    from i2i.diffusion.model import DiffusionModel
    from i2i.progress import Reporter

# The VAE latent is sampled with this seed, so that the trajectory depends only on the cache key.
VAE_SAMPLE_SEED = 0


@dataclass(frozen=True)
class Trajectory:
    """Inverted latents of one condition: ``latents[i]`` ``[1, c, h, w]`` is x_t^g at ``timesteps[i]``."""

    timesteps: tuple[int, ...]
    latents: torch.Tensor          # [S, c, h, w], float32, CPU
    clean: torch.Tensor            # [1, c, h, w]: the VAE latent x_0^g
    cache_path: Path | None = None
    cache_hit: bool = False

    def at(self, t: int) -> torch.Tensor:
        """x_t^g ``[1, c, h, w]`` at the stored timestep nearest to ``t``."""
        ts = torch.tensor(self.timesteps)
        i = int((ts - int(t)).abs().argmin())
        return self.latents[i:i + 1]


def resize_condition(image: Image.Image, shape: tuple[int, int]) -> Image.Image:
    """The condition as the model sees it: RGB, resized (bicubic, like the official code) to ``shape`` =
    ``(height, width)``."""
    return convert_image(image).resize((shape[1], shape[0]), Image.Resampling.BICUBIC)


def trajectory_key(weights_id: str, image: Image.Image, prompt: str, size: tuple[int, int], inversion_steps: int,
                   scheduler_config: dict, timesteps: list[int]) -> str:
    pixels = hashlib.sha256(image.tobytes()).hexdigest()
    return cache_key({"kind": "inversion", "model": weights_id, "pixels": pixels, "prompt": prompt, "size": list(size),
                      "inversion_steps": inversion_steps, "scheduler": dict(scheduler_config),
                      "timesteps": list(timesteps)})


def inversion_timesteps_for(inverse_timesteps: list[int], wanted: list[int]) -> dict[int, int]:
    """For each wanted (synthesis) timestep, the nearest timestep of the inversion schedule."""
    inv = torch.tensor(inverse_timesteps)
    return {int(t): int(inv[(inv - int(t)).abs().argmin()]) for t in wanted}


@torch.no_grad()
def invert_condition(pipe: "DiffusionModel", image: Image.Image, prompt: str, size: tuple[int, int],
                     timesteps: list[int], inversion_steps: int = 999, cache_dir: Path | None = None,
                     reporter: "Reporter | None" = None) -> Trajectory:
    """Invert ``image`` at ``size`` = ``(height, width)`` and return the trajectory at ``timesteps`` (synthesis
    timesteps), from the cache when possible. A corrupt or mismatched cache entry is rebuilt."""
    size = (int(size[0]), int(size[1]))
    image = resize_condition(image, size)
    inverse = pipe.inverse_scheduler
    inverse.set_timesteps(inversion_steps)
    inverse_ts = [int(t) for t in inverse.timesteps]
    key = trajectory_key(pipe.weights_id, image, prompt, size, inversion_steps, dict(inverse.config), timesteps)
    if cache_dir is None:
        return _invert(pipe, image, prompt, size, timesteps, inverse_ts, reporter)
    path = Path(cache_dir) / "inversion" / f"{key[:40]}.safetensors"
    with entry_lock(path, reporter):
        entry = load_entry(path, key)
        if entry is not None:
            tensors, info = entry
            return Trajectory(tuple(info["timesteps"]), tensors["latents"], tensors["clean"], path, True)
        if path.exists() and reporter is not None:
            reporter.warn(f"inversion cache entry {path.name} is corrupt or stale; rebuilding it")
        traj = _invert(pipe, image, prompt, size, timesteps, inverse_ts, reporter)
        saved = store_entry(path, {"latents": traj.latents, "clean": traj.clean}, key,
                            {"timesteps": list(traj.timesteps), "prompt": prompt, "size": list(size),
                             "model": pipe.model_id, "inversion_steps": inversion_steps}, reporter)
    return Trajectory(traj.timesteps, traj.latents, traj.clean, saved, False)


def _invert(pipe: "DiffusionModel", image: Image.Image, prompt: str, size: tuple[int, int], timesteps: list[int],
            inverse_ts: list[int], reporter: "Reporter | None") -> Trajectory:
    """DDIM-invert ``image`` along ``inverse_ts`` (the inverse scheduler's, already set), keeping the latents
    nearest each of ``timesteps``."""
    inverse = pipe.inverse_scheduler
    wanted = sorted(set(int(t) for t in timesteps))
    mapping = inversion_timesteps_for(inverse_ts, wanted)
    keep = set(mapping.values())
    last = max(keep)
    clean = pipe.encode_image(image, generator=torch.Generator("cpu").manual_seed(VAE_SAMPLE_SEED))
    cond = pipe.encode_text([prompt], size=size)
    latents = clean.to(pipe.device)
    recorded: dict[int, torch.Tensor] = {}
    todo = [t for t in inverse_ts if t <= last]
    with progress_bar(reporter, len(todo), "inverting") as advance:
        for t in todo:
            eps = pipe.unet_forward(latents, t, cond)
            latents = inverse.step(eps, t, latents).prev_sample
            if t in keep:
                recorded[t] = latents.float().cpu()
            advance(1)
    stacked = torch.cat([recorded[mapping[t]] for t in wanted])
    return Trajectory(tuple(wanted), stacked, clean.float().cpu(), None, False)
