"""Kernel Inception Distance of two feature sets, computed by torchmetrics, with its spread over subsets.

KID is the unbiased estimate of the squared MMD with the polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged
over ``subsets`` random subsets of ``subset_size`` images from each set; the standard deviation over subsets says
how far to trust a difference. Unlike FID it is unbiased, so small test sets are fine.

Subset size: the standard 1000 when both sets have at least 2000 images, else half the smaller set (at least 2),
so that subsets differ from each other and the spread means something. The subsets are drawn from a private
seeded generator: the same inputs always give the same numbers and the global RNG state is left as it was.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from i2i.errors import InputError

if TYPE_CHECKING:
    import torch

STANDARD_SUBSET_SIZE = 1000
STANDARD_SUBSETS = 100


@dataclass(frozen=True)
class KID:
    mean: float
    std: float
    subsets: int
    subset_size: int

    def to_dict(self) -> dict:
        return {"kid": self.mean, "kid_std": self.std, "kid_subsets": self.subsets,
                "kid_subset_size": self.subset_size}


def default_subset_size(n_real: int, n_fake: int) -> int:
    return max(2, min(STANDARD_SUBSET_SIZE, min(n_real, n_fake) // 2))


def kid(real: "torch.Tensor", fake: "torch.Tensor", subsets: int = STANDARD_SUBSETS,
        subset_size: int | None = None, seed: int = 0) -> KID:
    """KID between feature sets ``real`` ``[N, D]`` and ``fake`` ``[M, D]``: mean and std over subsets."""
    import torch
    from torchmetrics.image.kid import KernelInceptionDistance

    from i2i.metrics.frechet import _identity

    n, m = real.shape[0], fake.shape[0]
    size = subset_size or default_subset_size(n, m)
    if size < 2 or size > min(n, m):
        raise InputError(f"KID subset size {size} needs at least that many images per set, and at least 2 "
                         f"(got {n} real, {m} fake)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=_identity(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real.double().cpu(), real=True)
    metric.update(fake.double().cpu(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return KID(float(mean), float(std), subsets, size)
