"""Metrics that say how good a translation is, from Python and the CLI.

- Distribution metrics on extractor features: :func:`~i2i.metrics.frechet.fid` and :func:`~i2i.metrics.kernel.kid`
  (torchmetrics). There is no domain-classifier score: docs/metrics.md says why.
- Feature extractors: any ``nn.Module`` wrapped in :class:`~i2i.metrics.features.FeatureExtractor`; by name,
  ``inception`` (standard, needs weights: :mod:`i2i.metrics.inception`) and ``random-cnn`` (offline stand-in).
- During training: :func:`~i2i.metrics.training.generator_kid` (deterministic, leaves the global RNG alone).
- Per generated image: :func:`~i2i.metrics.score.score_images` (DINO self-similarity distance, CLIP score).

Importing this package imports neither torch nor the metric libraries; the names below load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "FeatureExtractor": "i2i.metrics.features", "fid": "i2i.metrics.frechet", "kid": "i2i.metrics.kernel",
    "KID": "i2i.metrics.kernel",
    "build_extractor": "i2i.metrics.registry", "inception_extractor": "i2i.metrics.inception",
    "random_cnn_extractor": "i2i.metrics.registry", "generator_kid": "i2i.metrics.training",
    "score_images": "i2i.metrics.score",
}
__all__ = sorted(_LAZY)

# The usage error for ``--metrics domain`` (``EvalConfig(metrics=("domain",))``), the score earlier versions had.
DOMAIN_SCORE_REMOVED = ("the domain score was removed because its linear probe ranked a 5-iteration model above a "
                        "near-perfect one (docs/metrics.md)")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'i2i.metrics' has no attribute {name!r}")
