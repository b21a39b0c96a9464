"""Anti-aliased resampling with fixed binomial filters (Zhang 2019), as used by CUT's generator and PatchGAN.

Both layers hold their filter in a persistent buffer ``filt`` (so it appears in the ``state_dict``, as in the CUT
reference checkpoints); it is a constant, rebuilt identically at construction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def binomial_filter(size: int) -> torch.Tensor:
    """The ``size`` x ``size`` outer product of the binomial row (1, 3, 3, 1 for size 4), normalised to sum 1."""
    if not 1 <= size <= 7:
        raise ValueError(f"filter size {size}: 1..7 supported")
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    kernel = row[:, None] * row[None, :]
    return (kernel / kernel.sum()).float()


class Downsample(nn.Module):
    """Blur-pool: reflect-pad 1, then a depthwise 3x3 binomial blur at stride 2. ``[N,C,H,W] -> [N,C,ceil(H/2),
    ceil(W/2)]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filt", binomial_filter(3)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class Upsample(nn.Module):
    """Fixed-filter 2x upsampling: replicate-pad 1, depthwise transposed conv with the 4x4 binomial filter (sum 4)
    at stride 2, padding 2, then drop the first and last row and column. ``[N,C,H,W] -> [N,C,2H,2W]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filt", (binomial_filter(4) * 4)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.filt, stride=2, padding=2,
                               groups=x.shape[1])
        return y[:, :, 1:-1, 1:-1]
