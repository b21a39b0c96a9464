"""Fréchet Inception Distance of two feature sets, computed by torchmetrics (its matrix square root).

FID = ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) between Gaussians fitted to the features. It is
biased upwards on small sets (the bias shrinks like 1/N): compare FIDs only at equal set sizes, and prefer KID
below a few thousand images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from i2i.errors import InputError

if TYPE_CHECKING:
    import torch


def _identity(dim: int) -> "torch.nn.Module":
    """torchmetrics' custom-feature route with features computed beforehand: the 'network' passes them on."""
    from torch import nn

    net = nn.Identity()
    net.num_features = dim  # read by torchmetrics instead of probing with a dummy image
    return net


def fid(real: "torch.Tensor", fake: "torch.Tensor") -> float:
    """FID between feature sets ``real`` ``[N, D]`` and ``fake`` ``[M, D]`` (N, M >= 2)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise InputError(f"FID needs at least 2 images per set (got {real.shape[0]} real, {fake.shape[0]} fake)")
    metric = FrechetInceptionDistance(feature=_identity(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())
