"""``random-cnn``: a labelled stand-in feature extractor for machines without Inception weights.

A small convolutional network with fixed random (He-initialised) weights drawn from its own seeded generator,
so it is identical on every machine and never touches the global RNG. Its features are the global averages of
three stages (``7 * width`` values). Random convolutional features do separate image statistics (colour,
texture, edges), so the numbers rank models sensibly, but they are NOT Inception features: FID/KID computed with
them are not comparable to published values.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class RandomCNN(nn.Module):
    """Fixed random features ``[N, 7 * width]`` of images ``[N, 3, H, W]`` in [-1, 1] (any size >= 8)."""

    def __init__(self, seed: int = 0, width: int = 32) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        chans = [3, width, 2 * width, 4 * width]
        self.stages = nn.ModuleList()
        for c_in, c_out in zip(chans, chans[1:]):
            with torch.random.fork_rng(devices=[]):      # nn.Conv2d's own init draws from the global RNG
                conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * math.sqrt(2.0 / (c_in * 9)))
                conv.bias.zero_()
            self.stages.append(nn.Sequential(conv, nn.ReLU()))
        self.num_features = sum(chans[1:])
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)
