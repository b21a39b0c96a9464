"""Loading Stable Diffusion pipelines (a diffusers folder, a hub id, or a single ``.safetensors`` / ``.ckpt``
checkpoint) and naming the weights they hold (model identity, used in cache keys).

Nothing here changes other libraries' global settings (logging, progress bars): the CLI does that in its entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from i2i.errors import CheckpointError, UsageError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


def _fingerprint_file(path: Path, chunk: int = 4 << 20) -> str:
    size = path.stat().st_size
    h = hashlib.sha256(f"{path.name}|{size}|".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(chunk))
        if size > 2 * chunk:
            fh.seek(size - chunk)
            h.update(fh.read(chunk))
    return h.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """Model identity of a diffusers folder: its configs (not i2i's settings files), and per weight file its size
    and the sha256 of its first and last 4 MiB (cheap, and different weights of the same architecture differ)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
        if rel.split("/")[0].startswith("i2i_"):   # our own files (recommended settings, shipped bases)
            continue
        if p.suffix == ".json" or p.name == "merges.txt":
            h.update(rel.encode() + b"|" + p.read_bytes())
        elif p.suffix in (".safetensors", ".bin", ".ckpt", ".pt", ".pth"):
            h.update(rel.encode() + b"|" + _fingerprint_file(p).encode())
    return h.hexdigest()[:24]


def modules_fingerprint(*modules: torch.nn.Module | None) -> str:
    """Model identity of in-memory modules: sha256 of every parameter and buffer."""
    h = hashlib.sha256()
    for m in modules:
        if m is None:
            continue
        for name, t in list(m.state_dict().items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Move a frozen, eval-mode ``module`` to ``device`` (and ``dtype`` only when it differs)."""
    module.to(device)
    if next(module.parameters()).dtype != dtype:
        module.to(dtype)
    return module.requires_grad_(False).eval()


def offline() -> bool:
    from i2i.hub import offline as hub_offline

    return hub_offline()


def is_single_file(model: str | os.PathLike) -> bool:
    return Path(os.fspath(model)).suffix.lower() in SINGLE_FILE_SUFFIXES


def resolve_model_folder(model: str) -> Path:
    """A local diffusers folder for ``model`` (a folder, or a hub id found in / downloaded to the HF cache)."""
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise CheckpointError(f"{path}: not a diffusers pipeline folder (no model_index.json)")
        return path.resolve()
    if model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1) or model.count("/") > 1:
        raise CheckpointError(f"{model}: no such model folder")
    from diffusers import DiffusionPipeline

    from i2i.hub import download_hint, require_weights

    hint = download_hint(model, "--model")
    cached = require_weights(model, "model_index.json", "the diffusion model", hint)   # fails at once if missing
    try:
        folder = DiffusionPipeline.download(model, local_files_only=cached or offline())
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{model}: cannot get this model ({type(exc).__name__}: {reason}). {hint}") from exc
    return Path(folder)


@dataclass(frozen=True)
class LoadedPipeline:
    """A diffusers pipeline with where it came from: ``folder`` is the diffusers folder (None for a single file),
    ``model_id`` names the weights (path or id @ fingerprint)."""

    base: object
    model_id: str
    folder: Path | None


def _pipeline_class(xl: bool):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if xl else StableDiffusionPipeline


def _sd_kwargs(xl: bool) -> dict:
    return {} if xl else {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


_NOT_LOADED = ("safety_checker", "feature_extractor", "image_encoder")     # i2i passes None or never uses them
_NEEDED = ("unet", "vae", "scheduler", "text_encoder", "tokenizer")
_NEEDED_XL = ("text_encoder_2", "tokenizer_2")
_WEIGHTS = re.compile(r"^(diffusion_pytorch_model|model|pytorch_model)(?:\.(?P<v>\w+))?(?:-\d+-of-\d+)?"
                      r"\.(?:safetensors|bin)$")


def _read_index(folder: Path) -> dict:
    try:
        index = json.loads((folder / "model_index.json").read_text())
        index["_class_name"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{folder}: unreadable model_index.json ({exc})") from exc
    return index


def _listed(index: dict) -> dict[str, str]:
    """The components model_index.json lists with a class (name -> class), less those i2i does not load."""
    return {name: spec[1] for name, spec in index.items() if not name.startswith("_") and isinstance(spec, list)
            and len(spec) == 2 and spec[1] is not None and name not in _NOT_LOADED}


def _unet_in_channels(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "unet" / "config.json").read_text())["in_channels"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _refuse_unsupported(model: str, folder: Path, index: dict) -> None:
    """Model types i2i cannot run (inpainting, image-conditioned UNets, SDXL refiners, other architectures): a
    CheckpointError from model_index.json and the UNet's config, before any weights are read."""
    class_name, listed = index["_class_name"], _listed(index)
    channels = _unet_in_channels(folder)
    if "Inpaint" in class_name or channels == 9:
        raise CheckpointError(f"{model}: inpainting models are not supported; use the base model")
    if channels is not None and channels != 4:
        raise CheckpointError(f"{model}: a UNet with {channels} input channels (an image-conditioned model such as "
                              "depth, instruct-pix2pix or upscaling) is not supported; use a text-to-image base model")
    if "XL" in class_name and "text_encoder" not in listed:
        raise CheckpointError(f"{model}: SDXL refiner models (no text_encoder) are not supported; use the SDXL "
                              "base model")
    for name in _NEEDED + (_NEEDED_XL if "XL" in class_name else ()):
        if name not in listed:
            raise CheckpointError(f"{model}: a {class_name} model without {name} (model_index.json) is not "
                                  "supported; use a Stable Diffusion 1.x/2.x or SDXL text-to-image model")


def _weight_variants(path: Path) -> set[str | None]:
    """The variants of the weight files in a component folder (None: the plain files)."""
    return {m["v"] for m in map(_WEIGHTS.match, (p.name for p in path.iterdir())) if m}


def _check_components(model: str, folder: Path, index: dict, todo: str) -> dict:
    """Every component model_index.json lists is there (its folder, its config, its weights), named when not.
    Returns the ``from_pretrained`` arguments that find the weights: the ``variant`` (e.g. ``fp16``) when some
    component has only variant weights (diffusers then falls back to the plain files of the others)."""
    needing: list[set[str]] = []
    for name, class_name in _listed(index).items():
        path = folder / name
        if not path.is_dir() or not any(path.iterdir()):
            raise CheckpointError(f"{model}: the model has no {name}/ folder (model_index.json lists {class_name}); "
                                  f"{todo}")
        if "tokenizer" in name.lower() or "scheduler" in name.lower():
            continue
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{model}: {name}/ has no config.json; {todo}")
        variants = _weight_variants(path)
        if not variants:
            raise CheckpointError(f"{model}: {name}/ holds no weights (.safetensors or .bin); {todo}")
        if None not in variants:
            needing.append(variants)
    if not needing:
        return {}
    common = set.intersection(*needing)
    if not common:
        raise CheckpointError(f"{model}: its components hold only weights of different variants "
                              f"({', '.join(sorted(set.union(*needing)))}); {todo}")
    return {"variant": "fp16" if "fp16" in common else sorted(common)[0]}


def _cap_tokenizers(base) -> None:
    """A tokenizer without tokenizer_config.json (an old layout) has transformers' placeholder model_max_length
    (1e30), which the pipeline pads to: cap it at its text encoder's ``max_position_embeddings``."""
    for tok_name, enc_name in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        tok, enc = getattr(base, tok_name, None), getattr(base, enc_name, None)
        if tok is None or enc is None:
            continue
        limit = getattr(enc.config, "max_position_embeddings", None)
        if limit is not None and tok.model_max_length > limit:
            tok.model_max_length = int(limit)


def _load_folder(model: str, dtype: torch.dtype) -> LoadedPipeline:
    folder = resolve_model_folder(model)
    index = _read_index(folder)
    _refuse_unsupported(model, folder, index)
    if Path(model).expanduser().exists():
        todo = "copy the model's whole diffusers folder (every folder model_index.json lists)"
    else:
        from i2i.hub import download_hint

        todo = f"the Hugging Face cache holds an incomplete download. {download_hint(model, '--model')}"
    found = _check_components(model, folder, index, todo)
    xl = "XL" in index["_class_name"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = _pipeline_class(xl).from_pretrained(folder, torch_dtype=dtype, local_files_only=True,
                                                       **found, **_sd_kwargs(xl))
    except Exception as exc:
        raise CheckpointError(f"{model}: cannot load the pipeline ({type(exc).__name__}: {exc})") from exc
    _cap_tokenizers(base)
    return LoadedPipeline(base, f"{model}@{folder_fingerprint(folder)}", folder)


def _single_file_is_xl(path: Path, config: str | None) -> bool:
    """SDXL or SD 1.x/2.x: from ``config``'s model_index.json when given, else from the checkpoint's keys."""
    if config is not None and (Path(config) / "model_index.json").is_file():
        return "XL" in json.loads((Path(config) / "model_index.json").read_text()).get("_class_name", "")
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type, load_single_file_checkpoint

    return infer_diffusers_model_type(load_single_file_checkpoint(str(path))).startswith("xl")


def _load_single_file(model: str, dtype: torch.dtype, config: str | None) -> LoadedPipeline:
    """A single-file SD checkpoint through diffusers' ``from_single_file``. ``config``: a diffusers folder (or hub
    id) whose component configs and tokenizers describe the checkpoint; needed offline, since diffusers otherwise
    fetches the matching configs from the hub."""
    path = Path(model).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    from i2i.hub import hub_host, hub_reachable

    local = offline() or (config is None and not hub_reachable())     # no hub: its configs only from the cache
    if config is not None and Path(config).expanduser().exists():
        config = str(resolve_model_folder(config))
    try:
        xl = _single_file_is_xl(path, config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = _pipeline_class(xl).from_single_file(str(path), config=config, torch_dtype=dtype,
                                                        local_files_only=local, **_sd_kwargs(xl))
    except Exception as exc:
        if config is None and local:          # the configs it needs are not in the Hugging Face cache
            why = "HF_HUB_OFFLINE is set" if offline() else f"the hub ({hub_host()}) cannot be reached"
            raise UsageError(f"{path}: a single-file checkpoint needs --config DIR (a diffusers folder of the same "
                             f"architecture, for its component configs and tokenizer) when {why} and the "
                             "Hugging Face cache does not hold them") from exc
        raise _not_a_checkpoint(path, config, exc) from exc
    return LoadedPipeline(base, f"{path.name}@{_fingerprint_file(path)[:24]}", None)


def _not_a_checkpoint(path: Path, config: str | None, exc: Exception) -> CheckpointError:
    """One line for a file diffusers cannot build a pipeline from (a LoRA, a VAE or text encoder alone, a truncated
    file, another architecture than ``config``'s): what it is not, and the first line of diffusers' reason."""
    reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    cause = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    matching = f" matching --config {config}" if config is not None else ""
    return CheckpointError(f"{path}: not a whole SD/SDXL checkpoint{matching} ({cause}); pass a full checkpoint (not a "
                           "LoRA or other partial file) and a --config folder of its architecture")


def load_pipeline(model: str | os.PathLike, precision: str = "fp32", config: str | None = None) -> LoadedPipeline:
    """Load an SD 1.x / 2.x / SDXL pipeline: a diffusers folder, a hub id (only from the local cache when
    ``HF_HUB_OFFLINE`` is set) or a single ``.safetensors`` / ``.ckpt`` checkpoint (``config``: see
    :func:`_load_single_file`). The safety checker is not loaded; progress bars are off."""
    model = os.fspath(model)
    dtype = DTYPES[precision]
    if config is not None and not is_single_file(model):
        raise UsageError(f"--config describes a single-file --model (.safetensors / .ckpt); {model} is a folder or "
                         "hub id, which describes itself")
    loaded = _load_single_file(model, dtype, config) if is_single_file(model) else _load_folder(model, dtype)
    loaded.base.set_progress_bar_config(disable=True)
    return loaded
