"""Analysis stage: semantic bases from seed images of a concept, keyed by timestep value, with an on-disk cache.

Seed images are generated from a generic prompt ("A photo of a {concept}, ...") with classifier-free guidance.
At each timestep of the analysed part of the schedule, the self-attention keys of every ``attn1`` in the feature
block are recorded for the conditional half of the batch; per timestep and layer, the keys of all seed images
(``[N_s * HW, C]``) are mean-centred and their first ``N_b`` principal directions kept (official: N_b = 64).

Unlike the official code, which keys the bases by step index (so synthesis must use the analysis's 200 steps),
the bases are keyed by the timestep value; synthesis at any step count uses the nearest analysed timestep.
Generation stops after the last analysed step (the finished seed images are never needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from i2i.errors import CheckpointError, InputError
from i2i.diffusion.cache import cache_key, load_entry, progress_bar, save_entry
from i2i.freecontrol.config import BasesConfig
from i2i.freecontrol.features import FeatureStore, block_attention_layers, default_feature_block, recording
from i2i.freecontrol.guidance import pca_basis

if TYPE_CHECKING:
    from i2i.diffusion.model import DiffusionModel
    from i2i.progress import Reporter


@dataclass(frozen=True)
class SemanticBases:
    """Per analysed timestep ``t`` and layer ``l``: the key mean ``means[t, l]`` ``[C]`` and the principal
    directions ``bases[t, l]`` ``[K, C]``. ``timesteps`` ``[T]`` are timestep values (not step indices)."""

    timesteps: torch.Tensor        # [T] int64
    layers: tuple[str, ...]        # attn1 module names, e.g. up_blocks.1.attentions.0.transformer_blocks.0.attn1
    means: torch.Tensor            # [T, L, C]
    bases: torch.Tensor            # [T, L, K, C]
    info: dict = field(default_factory=dict)
    path: Path | None = None
    cache_hit: bool = False

    @property
    def n_components(self) -> int:
        return int(self.bases.shape[2])

    def index(self, t: int) -> int:
        """Index of the analysed timestep nearest to ``t``."""
        return int((self.timesteps - int(t)).abs().argmin())

    def spacing(self) -> int:
        """Largest gap between neighbouring analysed timesteps (0 with a single one)."""
        ts = self.timesteps.sort().values
        return int((ts[1:] - ts[:-1]).max()) if len(ts) > 1 else 0

    def at(self, t: int, layer: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean [C], basis [K, C])`` for the analysed timestep nearest to ``t``."""
        i = self.index(t)
        return self.means[i, layer].to(device), self.bases[i, layer].to(device)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"timesteps": self.timesteps, "means": self.means, "bases": self.bases}


def save_bases(bases: SemanticBases, path: Path, key: str = "") -> Path:
    """Write ``bases`` as a checksummed safetensors file."""
    return save_entry(Path(path), bases.tensors(), key, {**bases.info, "layers": list(bases.layers)})


def load_bases(path: str | Path, key: str | None = None) -> SemanticBases | None:
    """Bases saved by :func:`save_bases`; None if missing, corrupt or (with ``key``) stored under another key."""
    entry = load_entry(Path(path), key)
    if entry is None:
        return None
    tensors, info = entry
    return SemanticBases(tensors["timesteps"], tuple(info["layers"]), tensors["means"], tensors["bases"], info,
                         Path(path), True)


def bases_key(pipe: "DiffusionModel", concept: str, config: BasesConfig, size: int, block: str) -> str:
    return cache_key({"kind": "bases", "model": pipe.model_id, "concept": concept, "prompt": config.prompt(concept),
                      "negative": config.negative_prompt, "images": config.num_images, "seed": config.seed,
                      "steps": config.num_inference_steps, "analysis_end": config.analysis_end,
                      "components": config.n_components, "cfg": config.guidance_scale, "size": size,
                      "block": block, "scheduler": dict(pipe.scheduler.config)})


@torch.no_grad()
def compute_bases(pipe: "DiffusionModel", concept: str, config: BasesConfig, size: int,
                  reporter: "Reporter | None" = None) -> SemanticBases:
    """Run the analysis stage (no cache): generate ``config.num_images`` seed images for ``concept`` and return
    PCA bases for every analysed timestep."""
    config.validate()
    block = config.block or default_feature_block(pipe.unet)
    layers, _ = block_attention_layers(pipe.unet, block)
    if not layers:
        raise CheckpointError(f"the UNet has no self-attention layers in {block!r}")
    scheduler = pipe.make_scheduler()
    scheduler.set_timesteps(config.num_inference_steps)
    timesteps = scheduler.timesteps
    n_analysed = max(1, int(round(config.analysis_end * len(timesteps))))
    cond = pipe.encode_text([config.prompt(concept)], size=size, negative=config.negative_prompt)
    generator = torch.Generator("cpu").manual_seed(config.seed)
    latents = pipe.initial_noise(config.num_images, size, generator)
    means, bases = [], []
    store = FeatureStore()
    with recording(pipe.unet, store, layers), progress_bar(reporter, n_analysed, f"analysing '{concept}'") as adv:
        for t in timesteps[:n_analysed]:
            collected: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
            for start in range(0, config.num_images, config.batch_size):
                x = latents[start:start + config.batch_size]
                b = x.shape[0]
                store.clear()
                store.rows = list(range(b, 2 * b))          # the conditional half of the CFG batch
                eps = pipe.cfg_noise(x, t, cond.expand(b), config.guidance_scale)
                for name in layers:
                    collected[name].append(store.keys[name].float().reshape(-1, store.keys[name].shape[-1]))
                latents[start:start + b] = scheduler.step(eps, t, x).prev_sample
            store.clear()
            step_means, step_bases = [], []
            for name in layers:
                mean, basis = pca_basis(torch.cat(collected[name]), config.n_components)
                step_means.append(mean.cpu())
                step_bases.append(basis.cpu())
            del collected
            means.append(torch.stack(step_means))
            bases.append(torch.stack(step_bases))
            adv(1)
    info = {"concept": concept, "model": pipe.model_id, "seed": config.seed, "num_images": config.num_images,
            "steps": config.num_inference_steps, "size": size, "block": block, "source": "i2i"}
    return SemanticBases(timesteps[:n_analysed].to(torch.int64).cpu(), tuple(layers), torch.stack(means),
                         torch.stack(bases), info)


def cached_bases(pipe: "DiffusionModel", concept: str, config: BasesConfig, size: int,
                 cache_dir: Path | None, reporter: "Reporter | None" = None) -> SemanticBases:
    """The bases for ``concept`` from the cache, or computed and stored there. A corrupt entry is rebuilt."""
    block = config.block or default_feature_block(pipe.unet)
    key = bases_key(pipe, concept, config, size, block)
    path = Path(cache_dir) / "bases" / f"{key[:40]}.safetensors" if cache_dir is not None else None
    if path is not None:
        hit = load_bases(path, key)
        if hit is not None:
            return hit
        if path.exists() and reporter is not None:
            reporter.warn(f"bases cache entry {path.name} is corrupt or stale; rebuilding it")
    result = compute_bases(pipe, concept, config, size, reporter)
    if path is not None:
        save_bases(result, path, key)
        result = SemanticBases(result.timesteps, result.layers, result.means, result.bases, result.info, path, False)
    return result


def schedule_timesteps(num_inference_steps: int, num_train_timesteps: int = 1000, steps_offset: int = 1) -> list[int]:
    """Timesteps of a DDIM "leading" schedule, first to last (200 steps, offset 1: 996, 991, ..., 1)."""
    ratio = num_train_timesteps // num_inference_steps
    return [i * ratio + steps_offset for i in reversed(range(num_inference_steps))]


def import_official(path: str | Path, num_inference_steps: int = 200, num_train_timesteps: int = 1000,
                    steps_offset: int = 1) -> SemanticBases:
    """Read the official ``pca_info.pt`` (``{step index: {'attn_key': {module: {'mean': [C], 'basis': [K, C]}}}}``,
    step indices of a ``num_inference_steps``-step "leading" schedule) and key it by timestep value.

    Loaded with ``torch.load(weights_only=True)``: no code in the file is ever run.
    """
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable pca_info.pt ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"{path}: expected a dict of step index -> features")
    try:
        data = {int(k): v for k, v in data.items()}
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: expected integer step indices as keys") from exc
    schedule = schedule_timesteps(num_inference_steps, num_train_timesteps, steps_offset)
    steps = sorted(data)
    if steps[-1] >= len(schedule):
        raise CheckpointError(f"{path}: step index {steps[-1]} is outside a {num_inference_steps}-step schedule")
    try:
        layers = tuple(sorted(data[steps[0]]["attn_key"]))
        means = torch.stack([torch.stack([data[i]["attn_key"][n]["mean"].float() for n in layers]) for i in steps])
        bases = torch.stack([torch.stack([data[i]["attn_key"][n]["basis"].float() for n in layers]) for i in steps])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: unexpected pca_info layout ({type(exc).__name__}: {exc})") from exc
    timesteps = torch.tensor([schedule[i] for i in steps], dtype=torch.int64)
    return SemanticBases(timesteps, layers, means, bases,
                         {"source": "official", "file": str(path), "steps": num_inference_steps}, path, False)


def read_bases_file(path: str | Path) -> SemanticBases:
    """Bases from a file: ours (``.safetensors``) or the official ``pca_info.pt``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such bases file")
    if path.suffix in (".pt", ".pth", ".bin"):
        return import_official(path)
    loaded = load_bases(path)
    if loaded is None:
        raise CheckpointError(f"{path}: not a valid i2i bases file (corrupt or another format version)")
    return loaded
