"""Analysis stage: semantic bases from seed images of a concept, keyed by timestep value, with an on-disk cache.

Seed images are generated from a generic prompt ("A photo of a {concept}, ...") with classifier-free guidance.
At each timestep of the analysed part of the schedule, the self-attention keys of every ``attn1`` in the feature
block are recorded for the conditional half of the batch; per timestep and layer, the keys of all seed images
(``[N_s * HW, C]``) are mean-centred and their first ``N_b`` principal directions kept (official: N_b = 64).

Unlike the official code, which keys the bases by step index (so synthesis must use the analysis's 200 steps),
the bases are keyed by the timestep value; synthesis at any step count uses the nearest analysed timestep.
Generation stops after the last analysed step (the finished seed images are never needed).

Two variants take the keys from DDIM-*inverted* images instead (``BasesConfig.source``): the seed images
generated to the end and inverted (the paper's description of the analysis), or the user's own images of the
concept. Each image is inverted like a condition (cached) and its keys are read at every analysed timestep from
a UNet pass on its inverted latent with the inversion prompt; the same PCA follows.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from i2i.errors import CheckpointError, InputError, UsageError
from i2i.diffusion.attention import attention_layers
from i2i.diffusion.cache import cache_key, entry_lock, load_entry, progress_bar, save_entry, store_entry
from i2i.freecontrol.config import BasesConfig
from i2i.freecontrol.features import FeatureStore, block_attention_layers, default_feature_block, recording
from i2i.freecontrol.guidance import pca_basis
from i2i.progress import warn

if TYPE_CHECKING:
    from PIL import Image

    from i2i.diffusion.inversion import Trajectory
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

    def entry_info(self) -> dict:
        """What a bases file stores beside the tensors."""
        return {**self.info, "layers": list(self.layers)}

    def problem(self) -> str | None:
        """What makes these bases unusable in themselves (shapes that disagree, no components, values that are
        not finite), or None."""
        t, n = self.timesteps, len(self.layers)
        if t.ndim != 1 or len(t) == 0 or self.means.ndim != 3 or self.bases.ndim != 4:
            return "the timestep, mean and basis tensors do not have the bases' shapes"
        if self.means.shape[:2] != (len(t), n) or self.bases.shape[:2] != (len(t), n):
            return (f"{len(t)} timesteps and {n} layers, but means of shape {tuple(self.means.shape)} and bases of "
                    f"shape {tuple(self.bases.shape)}")
        if self.bases.shape[3] != self.means.shape[2]:
            return f"means of {self.means.shape[2]} channels but bases of {self.bases.shape[3]}"
        if self.n_components == 0:
            return "no principal components"
        if not (torch.isfinite(self.means).all() and torch.isfinite(self.bases).all()):
            return "values that are not finite (NaN or infinite)"
        return None

    def checked(self, source) -> "SemanticBases":
        """Self, or :class:`~i2i.errors.CheckpointError` naming ``source`` when :meth:`problem` finds one."""
        if (problem := self.problem()) is not None:
            raise CheckpointError(f"{source}: unusable semantic bases: {problem}")
        return self

    def fit_problem(self, unet: torch.nn.Module) -> str | None:
        """Why these bases do not fit ``unet`` (a layer it lacks or that is not a self-attention layer, a key width
        other than the bases' channels), or None."""
        names = set(attention_layers(unet))
        for layer in self.layers:
            if layer not in names or not layer.endswith("attn1"):
                return f"they are for a layer this UNet lacks ({layer})"
            width = unet.get_submodule(layer).to_k.out_features
            if width != self.means.shape[2]:
                return (f"they have {self.means.shape[2]} channels, but this UNet's {layer} has keys of "
                        f"{width} channels (bases of another model?)")
        return None


def save_bases(bases: SemanticBases, path: Path, key: str = "") -> Path:
    """Write ``bases`` as a checksummed safetensors file."""
    return save_entry(Path(path), bases.tensors(), key, bases.entry_info())


def load_bases(path: str | Path, key: str | None = None, usable: bool = True) -> SemanticBases | None:
    """Bases saved by :func:`save_bases`; None if missing, corrupt, (with ``key``) stored under another key or
    (``usable``) unusable in themselves (see :meth:`SemanticBases.problem`)."""
    entry = load_entry(Path(path), key)
    if entry is None:
        return None
    tensors, info = entry
    loaded = SemanticBases(tensors["timesteps"], tuple(info["layers"]), tensors["means"], tensors["bases"], info,
                           Path(path), True)
    return loaded if not usable or loaded.problem() is None else None


def bases_key(pipe: "DiffusionModel", concept: str, config: BasesConfig, size: int, block: str,
              image_hashes: list[str] | None = None) -> str:
    """The key of the cache and of a model folder's own bases; the model is named by its weights' fingerprint
    (``pipe.weights_id``), not by the path it was loaded from."""
    fields = {"kind": "bases", "model": pipe.weights_id, "concept": concept, "prompt": config.prompt(concept),
              "negative": config.negative_prompt, "images": config.num_images, "seed": config.seed,
              "steps": config.num_inference_steps, "analysis_end": config.analysis_end,
              "components": config.n_components, "cfg": config.guidance_scale, "size": size,
              "block": block, "scheduler": dict(pipe.scheduler.config)}
    if config.source != "generated":            # (the official kind keeps the keys it always had)
        fields.update({"source": config.source, "inversion_prompt": config.inversion_text(concept),
                       "inversion_steps": config.inversion_steps, "image_hashes": image_hashes})
    return cache_key(fields)


@dataclass(frozen=True)
class ConceptImage:
    """One of the user's images of a concept: its path, pixels and the sha256 of the file's bytes."""

    path: Path
    image: "Image.Image"
    sha256: str


def read_concept_images(folder: str | Path, reporter: "Reporter | None" = None) -> list[ConceptImage]:
    """The readable images in ``folder`` (sorted by name; files without an image extension, hidden files and
    sub-folders ignored, as in a training folder). An unreadable image is skipped with a warning that names it;
    a folder with none raises :class:`InputError`."""
    from i2i.images import is_image_file, load_image

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of images")
    found = []
    for path in sorted(p for p in folder.iterdir()
                       if p.is_file() and is_image_file(p) and not p.name.startswith(".")):
        try:
            image = load_image(path)
        except InputError as exc:
            warn(reporter, f"skipped an unreadable image: {exc}")
            continue
        found.append(ConceptImage(path, image, hashlib.sha256(path.read_bytes()).hexdigest()))
    if not found:
        raise InputError(f"{folder}: no readable image in the folder")
    return found


def _seed_batches(pipe: "DiffusionModel", concept: str, config: BasesConfig, size: int, scheduler, timesteps,
                  latents: torch.Tensor, store: FeatureStore | None = None) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Sample the seed images ``latents`` (updated in place) over ``timesteps`` with CFG, ``config.batch_size`` per
    UNet call; after each timestep yield the keys ``store`` recorded per layer (the conditional half,
    ``[b * HW, C]`` per batch; nothing without a store)."""
    cond = pipe.encode_text([config.prompt(concept)], size=size, negative=config.negative_prompt)
    for t in timesteps:
        collected: dict[str, list[torch.Tensor]] = {}
        for start in range(0, config.num_images, config.batch_size):
            x = latents[start:start + config.batch_size]
            b = x.shape[0]
            if store is not None:
                store.clear()
                store.rows = list(range(b, 2 * b))          # the conditional half of the CFG batch
            eps = pipe.cfg_noise(x, t, cond.expand(b), config.guidance_scale)
            for name, keys in (store.keys.items() if store is not None else ()):
                collected.setdefault(name, []).append(keys.float().reshape(-1, keys.shape[-1]))
            latents[start:start + b] = scheduler.step(eps, t, x).prev_sample
        yield collected


def _seed_noise(pipe: "DiffusionModel", config: BasesConfig, size: int) -> torch.Tensor:
    return pipe.initial_noise(config.num_images, size, torch.Generator("cpu").manual_seed(config.seed))


def seed_images(pipe: "DiffusionModel", concept: str, config: BasesConfig, size: int,
                reporter: "Reporter | None" = None) -> list["Image.Image"]:
    """The analysis's seed images, generated to the end (the ``"inverted"`` source inverts them)."""
    scheduler = pipe.make_scheduler()
    scheduler.set_timesteps(config.num_inference_steps)
    latents = _seed_noise(pipe, config, size)
    with progress_bar(reporter, len(scheduler.timesteps), f"seed images of '{concept}'") as advance:
        for _ in _seed_batches(pipe, concept, config, size, scheduler, scheduler.timesteps, latents):
            advance(1)
    return pipe.decode(latents)             # one image at a time (i2i.diffusion.vae)


def _inverted_batches(pipe: "DiffusionModel", trajectories: list["Trajectory"], prompt: str, config: BasesConfig,
                      size: int, layers: list[str], timesteps: list[int]) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Per timestep, the keys per layer of a UNet pass on the images' inverted latents with ``prompt`` (no CFG, as
    for a condition), cut short after the last layer."""
    from i2i.freecontrol.features import run_until_recorded

    cond = pipe.encode_text([prompt], size=size)
    store = FeatureStore(stop_after=layers[-1])
    with recording(pipe.unet, store, layers):
        for t in timesteps:
            collected: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
            for start in range(0, len(trajectories), config.batch_size):
                x = torch.cat([tr.at(t) for tr in trajectories[start:start + config.batch_size]])
                store.clear()
                run_until_recorded(pipe.unet, store, x.to(pipe.device, pipe.dtype), t,
                                   **cond.expand(x.shape[0]).unet_kwargs())
                for name in layers:
                    collected[name].append(store.keys[name].float().reshape(-1, store.keys[name].shape[-1]))
            yield collected


@torch.no_grad()
def compute_bases(pipe: "DiffusionModel", concept: str, config: BasesConfig, size: int,
                  reporter: "Reporter | None" = None,
                  images: list[ConceptImage] | None = None) -> SemanticBases:
    """Run the analysis stage (no cache) and return PCA bases for every analysed timestep. The keys come from
    ``config.source``: the seed images' generation, their inversion, or the inversion of the user's images
    (``images``, default: read from ``config.images``)."""
    config.validate()
    block = config.block or default_feature_block(pipe.unet)
    layers, _ = block_attention_layers(pipe.unet, block)
    if not layers:
        raise CheckpointError(f"the UNet has no self-attention layers in {block!r}")
    scheduler = pipe.make_scheduler()
    scheduler.set_timesteps(config.num_inference_steps)
    n_analysed = max(1, int(round(config.analysis_end * len(scheduler.timesteps))))
    analysed = scheduler.timesteps[:n_analysed]
    info = {"concept": concept, "model": pipe.model_id, "seed": config.seed, "num_images": config.num_images,
            "steps": config.num_inference_steps, "size": size, "block": block, "source": "i2i",
            "keys_from": config.source}
    if config.source == "generated":
        store = FeatureStore()
        batches = _seed_batches(pipe, concept, config, size, scheduler, analysed, _seed_noise(pipe, config, size),
                                store)
        context = recording(pipe.unet, store, layers)
    else:
        if config.source == "inverted":
            pictures = seed_images(pipe, concept, config, size, reporter)
        else:
            images = images if images is not None else read_concept_images(config.images, reporter)
            pictures = [im.image for im in images]
            info.update(num_images=len(images), images=[im.path.name for im in images])
        from i2i.diffusion.inversion import invert_condition

        ts, prompt = [int(t) for t in analysed], config.inversion_text(concept)
        trajectories = [invert_condition(pipe, picture, prompt, (size, size), ts, config.inversion_steps or 999,
                                         pipe.cache_dir, reporter) for picture in pictures]
        batches = _inverted_batches(pipe, trajectories, prompt, config, size, layers, ts)
        context = contextlib.nullcontext()
    means, bases = [], []
    with context, progress_bar(reporter, n_analysed, f"analysing '{concept}'") as adv:
        for collected in batches:
            step = [pca_basis(torch.cat(collected[name]), config.n_components) for name in layers]
            del collected
            means.append(torch.stack([m.cpu() for m, _ in step]))
            bases.append([b.cpu() for _, b in step])
            adv(1)
    # one count for all: the highest rank; a layer or step of lower rank gets zero rows, whose coordinates are 0
    # (a flat component: no guidance), so no other layer loses a direction
    k = max(b.shape[0] for layer_bases in bases for b in layer_bases)
    padded = [[torch.cat([b, b.new_zeros(k - b.shape[0], b.shape[1])]) for b in layer_bases] for layer_bases in bases]
    return SemanticBases(analysed.to(torch.int64).cpu(), tuple(layers), torch.stack(means),
                         torch.stack([torch.stack(layer_bases) for layer_bases in padded]), info)


def cached_bases(pipe: "DiffusionModel", concept: str, config: BasesConfig, size: int,
                 cache_dir: Path | None, reporter: "Reporter | None" = None,
                 images: list[ConceptImage] | None = None) -> SemanticBases:
    """The bases for ``concept`` from the cache, or computed and stored there. A corrupt entry is rebuilt. With
    the user's images (``images``, default: read from ``config.images``) the key holds each image's content hash,
    so a changed, added or removed image is a miss."""
    config.validate()
    block = config.block or default_feature_block(pipe.unet)
    if config.source == "images" and images is None:
        images = read_concept_images(config.images, reporter)
    key = bases_key(pipe, concept, config, size, block, [im.sha256 for im in images] if images else None)
    if (shipped := folder_bases(pipe, key, reporter)) is not None:
        return shipped
    if cache_dir is None:
        return compute_bases(pipe, concept, config, size, reporter, images)
    path = Path(cache_dir) / "bases" / f"{key[:40]}.safetensors"
    with entry_lock(path, reporter):
        hit = load_bases(path, key)
        if hit is not None:
            return hit
        if path.exists() and reporter is not None:
            reporter.warn(f"bases cache entry {path.name} is corrupt or stale; rebuilding it")
        result = compute_bases(pipe, concept, config, size, reporter, images)
        saved = store_entry(path, result.tensors(), key, result.entry_info(), reporter)
    return SemanticBases(result.timesteps, result.layers, result.means, result.bases, result.info, saved, False)


SHIPPED_BASES = "i2i_bases"      # a model folder's precomputed bases (read only; not part of its identity)


def shipped_path(pipe: "DiffusionModel", key: str) -> Path:
    """Where the model's folder holds the bases of cache key ``key`` precomputed (the key names the model by its
    weights, so a folder's file holds wherever it is installed)."""
    return pipe.model_folder / SHIPPED_BASES / f"{key[:40]}.safetensors"


def folder_bases(pipe: "DiffusionModel", key: str, reporter: "Reporter | None" = None) -> SemanticBases | None:
    """The bases of cache key ``key`` that the model's folder ships, or None (no folder, no file; a corrupt or
    stale file is reported)."""
    if pipe.model_folder is None:
        return None
    path = shipped_path(pipe, key)
    if (shipped := load_bases(path, key)) is None and path.exists():
        warn(reporter, f"the model's bases file {path} is corrupt or stale; computing the bases instead")
    return shipped


def ship_bases(pipe: "DiffusionModel", concept: str, config: BasesConfig, size: int,
               reporter: "Reporter | None" = None) -> Path:
    """Compute the bases of ``concept`` and store them in the model's folder (``i2i_bases/``), where every later
    run with these settings finds them, on any machine, instead of computing them (about 37 s a concept for the
    demo model on one CPU thread). Generated seed images only; the model must have been loaded from a folder."""
    config.validate()
    if pipe.model_folder is None or config.source != "generated":
        raise UsageError("bases are shipped in a model folder, from generated seed images")
    key = bases_key(pipe, concept, config, size, config.block or default_feature_block(pipe.unet))
    result = compute_bases(pipe, concept, config, size, reporter)
    return save_bases(replace(result, info={**result.info, "model": pipe.weights_id}), shipped_path(pipe, key), key)


def schedule_timesteps(num_inference_steps: int, num_train_timesteps: int = 1000, steps_offset: int = 1) -> list[int]:
    """Timesteps of a DDIM "leading" schedule, first to last (200 steps, offset 1: 996, 991, ..., 1)."""
    ratio = num_train_timesteps // num_inference_steps
    return [i * ratio + steps_offset for i in reversed(range(num_inference_steps))]


# The official script writes its file to ``.../step_{num_steps}_sample_{N}_id_{k}/pca_info.pt`` (and its Gradio
# list names it ``{class}_step_{num_steps}_sample_{N}_id_{k}``): the only place the schedule is recorded.
_STEPS_IN_NAME = re.compile(r"(?:^|[^a-z0-9])step_(\d+)(?:$|[^0-9])", re.IGNORECASE)


def official_schedule_steps(path: str | Path) -> int | None:
    """The DDIM step count an official ``pca_info.pt`` was made with, read from its file or folder name
    (``step_199_sample_10_id_0/pca_info.pt``, ``cat_step_50.pt``); None when neither names one. The file itself
    keys its bases by step index only."""
    path = Path(path)
    for name in (path.stem, path.parent.name):
        found = _STEPS_IN_NAME.search(name)
        if found:
            return int(found.group(1))
    return None


def import_official(path: str | Path, num_inference_steps: int | None = None, num_train_timesteps: int = 1000,
                    steps_offset: int = 1) -> SemanticBases:
    """Read the official ``pca_info.pt`` (``{step index: {'attn_key': {module: {'mean': [C], 'basis': [K, C]}}}}``,
    step indices of a ``num_inference_steps``-step "leading" schedule) and key it by timestep value.

    The file does not record its schedule: ``num_inference_steps`` None reads it from the folder or file name
    the official script gives it (``step_{N}_sample_...``, see :func:`official_schedule_steps`) and refuses
    (:class:`~i2i.errors.CheckpointError`) when the name does not say, rather than guess: a 50-step file read as
    200 steps would pair every basis with the wrong timesteps.
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
    if num_inference_steps is None:
        num_inference_steps = official_schedule_steps(path)
        if num_inference_steps is None:
            raise CheckpointError(
                f"{path}: an official pca_info.pt keys its bases by step index and does not record how many DDIM "
                "steps made it; keep it in the folder the official script wrote (step_N_sample_M_id_K) or put "
                "step_N in its name (e.g. cat_step_200.pt, N: the --num_steps it was sampled with, 199 by default "
                "in sample_semantic_bases.py, 200 in its example scripts)")
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise CheckpointError(f"{path}: a {num_inference_steps}-step schedule is not possible")
    schedule = schedule_timesteps(num_inference_steps, num_train_timesteps, steps_offset)
    steps = sorted(data)
    if steps[0] < 0 or steps[-1] >= len(schedule):
        raise CheckpointError(f"{path}: step index {steps[-1] if steps[0] >= 0 else steps[0]} is outside the "
                              f"{num_inference_steps}-step schedule its name gives")
    try:
        layers = tuple(sorted(data[steps[0]]["attn_key"]))
        means = torch.stack([torch.stack([data[i]["attn_key"][n]["mean"].float() for n in layers]) for i in steps])
        bases = torch.stack([torch.stack([data[i]["attn_key"][n]["basis"].float() for n in layers]) for i in steps])
    except (KeyError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{path}: unexpected pca_info layout ({type(exc).__name__}: {exc})") from exc
    timesteps = torch.tensor([schedule[i] for i in steps], dtype=torch.int64)
    return SemanticBases(timesteps, layers, means, bases,
                         {"source": "official", "file": str(path), "steps": num_inference_steps}, path, False
                         ).checked(path)


def read_bases_file(path: str | Path, official_steps: int | None = None) -> SemanticBases:
    """Bases from a file: ours (``.safetensors``) or the official ``pca_info.pt`` (``official_steps``: the step
    count that made it; None: from its name, see :func:`import_official`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such bases file")
    if path.suffix in (".pt", ".pth", ".bin"):
        return import_official(path, official_steps)
    loaded = load_bases(path, usable=False)
    if loaded is None:
        raise CheckpointError(f"{path}: not a valid i2i bases file (corrupt or another format version)")
    return loaded.checked(path)
