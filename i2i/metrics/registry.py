"""Feature extractors by name, for the CLI (Python users can also pass any :class:`FeatureExtractor`)."""

from __future__ import annotations

import os

from i2i.errors import UsageError
from i2i.metrics.features import FeatureExtractor
from i2i.metrics.inception import INCEPTION, inception_extractor

RANDOM_CNN = "random-cnn"
EXTRACTORS = (INCEPTION, RANDOM_CNN)
RANDOM_CNN_SIZE = 128
RANDOM_CNN_SEED = 0


def random_cnn_extractor(device: "object" = "cpu", batch_size: int = 32) -> FeatureExtractor:
    """The offline stand-in (not Inception): fixed-seed random CNN features of images resized to 128 px."""
    from i2i.metrics.random_cnn import RandomCNN

    return FeatureExtractor(RandomCNN(seed=RANDOM_CNN_SEED), name=f"{RANDOM_CNN} (seed {RANDOM_CNN_SEED}; not "
                            "Inception)", size=RANDOM_CNN_SIZE, value_range="signed", batch_size=batch_size,
                            device=device)


def build_extractor(name: str, device: "object" = "cpu", inception_weights: str | os.PathLike | None = None,
                    batch_size: int = 32) -> FeatureExtractor:
    """``inception`` (standard; needs weights) or ``random-cnn`` (offline stand-in)."""
    if name == INCEPTION:
        return inception_extractor(inception_weights, device, batch_size)
    if inception_weights is not None:
        raise UsageError("--inception-weights is only for --features inception")
    if name == RANDOM_CNN:
        return random_cnn_extractor(device, batch_size)
    raise UsageError(f"--features {name!r}: choose one of {', '.join(EXTRACTORS)}")
