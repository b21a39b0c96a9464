"""The standard FID/KID features: Inception-v3 (2048-d pool features) with torch-fidelity's port of the original
TensorFlow FID weights, through torchmetrics.

Where the weights come from, in order:

1. ``weights`` (``--inception-weights FILE``);
2. the environment variable ``I2I_INCEPTION_WEIGHTS``;
3. the torch hub cache (``$TORCH_HOME/hub/checkpoints/`` + :data:`INCEPTION_FILE`, where torch-fidelity itself
   keeps them), downloaded there on first use unless ``HF_HUB_OFFLINE``/``I2I_OFFLINE`` is set.

When none works, one :class:`~i2i.errors.CheckpointError` (exit code 4) says which file to download and where to
put it. The file is checked with ``torch.load(weights_only=True)`` before use, so a file that would run code is
refused. torch-fidelity (and its torchvision dependency) is an optional extra: ``pip install 'i2i[inception]'``.
"""

from __future__ import annotations

import os
from pathlib import Path

from i2i.errors import CheckpointError
from i2i.metrics.features import FeatureExtractor

INCEPTION = "inception"
INCEPTION_ENV = "I2I_INCEPTION_WEIGHTS"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
OFFLINE_ENVS = ("I2I_OFFLINE", "HF_HUB_OFFLINE")


def inception_cache_path() -> Path:
    """Where torch-fidelity (and i2i) keep the downloaded weights."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def _how_to_get(reason: str) -> CheckpointError:
    return CheckpointError(
        f"Inception-v3 FID weights: {reason}. Download {INCEPTION_URL} (about 92 MB) and save it as "
        f"{inception_cache_path()}, or pass --inception-weights FILE (Python: inception_weights=FILE) or set "
        f"{INCEPTION_ENV}=FILE. Without them, the random-cnn features run offline (--features random-cnn; "
        "--eval-features random-cnn while training), a stand-in whose numbers are not comparable to published FIDs")


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENVS)


def resolve_inception_weights(weights: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The Inception weights file to use (see the module docstring); downloads into the cache if allowed."""
    import torch

    for given, origin in ((weights, "--inception-weights"), (os.environ.get(INCEPTION_ENV) or None, INCEPTION_ENV)):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise _how_to_get(f"{origin} {path}: no such file")
            return path
    cached = inception_cache_path()
    if cached.is_file():
        return cached
    if not download or _offline():
        raise _how_to_get(f"not in the cache and downloads are off ({'/'.join(OFFLINE_ENVS)})"
                          if download else "not in the cache")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=False)
    except Exception as exc:  # no network, proxy, HTTP error, disk full: all mean the same to the user
        raise _how_to_get(f"download failed ({type(exc).__name__}: {exc})") from exc
    return cached


def check_weights_file(path: Path) -> None:
    """Refuse a file that is not a plain tensor state dict (it would need unpickling arbitrary objects)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable weights-only PyTorch file ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise CheckpointError(f"{path}: not torch-fidelity's Inception-v3 FID weights ({INCEPTION_FILE})")


def inception_extractor(weights: str | os.PathLike | None = None, device: "object" = "cpu",
                        batch_size: int = 32) -> FeatureExtractor:
    """Inception-v3 pool features (2048-d) as used by FID/KID everywhere. Images keep their size: the network
    resizes to 299 px itself, with TensorFlow-compatible bilinear interpolation."""
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    need_package = ("the Inception features need torch-fidelity: pip install 'i2i[inception]' (or pip install "
                    "torch-fidelity)")
    try:
        path = resolve_inception_weights(weights)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {need_package}" if not _TORCH_FIDELITY_AVAILABLE else str(exc)) from None
    if not _TORCH_FIDELITY_AVAILABLE:
        raise CheckpointError(f"{need_package}; offline, --features random-cnn is a stand-in")
    check_weights_file(path)
    from torchmetrics.image.fid import NoTrainInceptionV3

    model = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                               feature_extractor_weights_path=str(path))
    return FeatureExtractor(model, name=f"inception-v3 ({path.name})", size=None, value_range="uint8",
                            batch_size=batch_size, device=device)
