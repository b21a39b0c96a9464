"""The image history buffer of Shrivastava et al. used by CycleGAN's discriminators."""

from __future__ import annotations

import random

import torch


class ImagePool:
    """Keeps up to ``size`` generated images; :meth:`query` returns a batch mixing current and past fakes.

    Until the pool is full, each image is stored and returned as is. Afterwards, with probability 0.5 an image
    is swapped with a random stored one (the stored one is returned), else it is returned as is. ``size == 0``
    disables the pool. The pool owns its random generator, so its state can be saved and restored exactly.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] (detached) -> [B, C, H, W]."""
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone(memory_format=torch.contiguous_format))
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                idx = self.rng.randint(0, self.size - 1)
                out.append(self.images[idx].clone())
                self.images[idx] = image.clone(memory_format=torch.contiguous_format)
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, json-able dict) describing the pool exactly."""
        tensors = {f"{i:05d}": img.cpu().contiguous() for i, img in enumerate(self.images)}
        version, internal, gauss = self.rng.getstate()
        return tensors, {"size": self.size, "count": len(self.images),
                         "rng": [version, list(internal), gauss]}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict, device: torch.device) -> None:
        self.size = meta["size"]
        self.images = [tensors[f"{i:05d}"].to(device) for i in range(meta["count"])]
        version, internal, gauss = meta["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
