"""KID of a generator during training: cheap, deterministic, and invisible to the training run's RNG.

:func:`generator_kid` translates a fixed held-out batch of source images, extracts features and compares them
with real target images (or their features, computed once with :func:`real_features`). It

- runs the generator in eval mode under ``no_grad`` and puts back its train/eval mode afterwards;
- draws the KID subsets from a private seeded generator, and restores the CPU (and the generator's CUDA device)
  RNG state on exit, so a training loop that evaluates every N iterations still resumes bit-exactly;
- gives the same numbers for the same weights and inputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from i2i.metrics.features import FeatureExtractor
from i2i.metrics.kernel import KID, kid

if TYPE_CHECKING:
    import torch
    from torch import nn

TRAINING_SUBSETS = 50


def image_batch(paths: Sequence[str | os.PathLike], size: int, mode: str = "RGB") -> "torch.Tensor":
    """A fixed evaluation batch: the images of ``paths`` (in that order, no randomness) resized to ``size`` x
    ``size`` (bicubic, as in training), as ``[N, C, size, size]`` in [-1, 1]. Unreadable files raise InputError."""
    import torch
    from PIL import Image

    from i2i.images import image_to_tensor, load_image

    return torch.stack([image_to_tensor(load_image(p, mode=mode).resize((size, size), Image.Resampling.BICUBIC))
                        for p in paths])


def real_features(extractor: FeatureExtractor, images: "torch.Tensor") -> "torch.Tensor":
    """Features of real target images ``[N, C, H, W]`` in [-1, 1]; compute once, reuse at every evaluation."""
    return extractor(images)


def generator_kid(generator: "nn.Module", source: "torch.Tensor", real_target: "torch.Tensor",
                  extractor: FeatureExtractor, *, subsets: int = TRAINING_SUBSETS,
                  subset_size: int | None = None, seed: int = 0, batch_size: int = 16) -> KID:
    """KID (mean, std over subsets) between ``generator(source)`` and the real target set.

    ``source``: held-out source images ``[N, C, H, W]`` in [-1, 1] (keep the same ones for the whole run).
    ``real_target``: real target images ``[M, C, H, W]`` in [-1, 1], or their features ``[M, D]`` from
    :func:`real_features`. The generator runs on the device of its parameters.
    """
    import torch

    device = next(generator.parameters()).device
    was_training = generator.training
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        generator.eval()
        try:
            with torch.no_grad():
                fake = torch.cat([generator(source[i:i + batch_size].to(device)).float().cpu()
                                  for i in range(0, source.shape[0], batch_size)])
                real = real_target if real_target.dim() == 2 else extractor(real_target)
                fake_features = extractor(fake)
        finally:
            generator.train(was_training)
    return kid(real, fake_features, subsets=subsets, subset_size=subset_size, seed=seed)
