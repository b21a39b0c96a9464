"""Structure distance between a condition image and a generated image: the self-similarity of ViT keys.

As in the FreeControl/Ctrl-X evaluations (after Splice, Tumanyan et al. 2022): both images are resized (shorter
side 224, longer side at most 480) and normalised with the ImageNet mean/std, fed to DINO ViT-B/8, and the keys
of the last layer's attention (all heads concatenated, CLS token included) give a token x token cosine
self-similarity matrix per image. The score is the mean squared difference of the two matrices: 0 for the same
structure, lower is better. Appearance (colour, texture) hardly moves it; layout does.

Pluggable: :class:`ViTKeys` wraps any ViT-like ``nn.Module`` whose attention has a key projection (``k_proj`` in
transformers 5, ``attention.key`` before); pass ``key_module`` for other networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from i2i.errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_DINO = "facebook/dino-vitb8"
SHORT_SIDE, MAX_SIDE = 224, 480


def last_key_projection(model: "nn.Module") -> "nn.Module":
    """The key projection of the last attention layer of a (transformers) ViT."""
    keys = [m for name, m in model.named_modules() if name.endswith(("k_proj", "attention.key"))]
    if not keys:
        raise CheckpointError(f"{type(model).__name__}: no attention key projection found (k_proj / "
                              "attention.key); pass key_module")
    return keys[-1]


@dataclass
class ViTKeys:
    """Last-layer keys ``[T, D]`` of an image; ``model(pixel_values=...)`` must run the ViT."""

    model: "nn.Module"
    key_module: "nn.Module | None" = None
    patch: int = 8
    device: Any = "cpu"
    name: str = "vit"

    def __post_init__(self) -> None:
        self.model = self.model.to(self.device).eval()
        self.key_module = self.key_module or last_key_projection(self.model)

    def keys(self, x: "torch.Tensor") -> "torch.Tensor":
        """Keys ``[N, T, D]`` of normalised images ``[N, 3, H, W]``."""
        import torch

        got: list[torch.Tensor] = []
        handle = self.key_module.register_forward_hook(lambda _m, _i, out: got.append(out))
        try:
            with torch.no_grad():
                self.model(pixel_values=x.to(self.device), interpolate_pos_encoding=True)
        finally:
            handle.remove()
        return got[-1].float().cpu()


def target_size(width: int, height: int, short: int = SHORT_SIDE, longest: int = MAX_SIDE,
                patch: int = 8) -> tuple[int, int]:
    """(H, W): shorter side ``short``, longer side at most ``longest``, both multiples of ``patch``."""
    scale = min(short / min(width, height), longest / max(width, height))
    return (max(patch, round(height * scale / patch) * patch), max(patch, round(width * scale / patch) * patch))


def imagenet_tensor(img: Image.Image, size: tuple[int, int]) -> "torch.Tensor":
    """RGB image -> ``[1, 3, H, W]`` resized to ``size`` and ImageNet-normalised."""
    import torch
    import torch.nn.functional as F

    from i2i.metrics.features import IMAGENET_MEAN, IMAGENET_STD, pil_to_signed

    x = (pil_to_signed(img)[None] + 1) / 2
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def cosine_self_similarity(keys: "torch.Tensor") -> "torch.Tensor":
    """``[T, D]`` -> ``[T, T]`` cosine similarities."""
    import torch.nn.functional as F

    k = F.normalize(keys, dim=-1)
    return k @ k.T


def self_similarity_distance(extractor: ViTKeys, condition: Image.Image, output: Image.Image) -> float:
    """MSE between the key self-similarity matrices of ``condition`` and ``output`` (the output is resized to the
    condition's evaluation size, so both have the same tokens)."""
    import torch

    size = target_size(*condition.size, patch=extractor.patch)
    keys = extractor.keys(torch.cat([imagenet_tensor(condition, size), imagenet_tensor(output, size)]))
    a, b = cosine_self_similarity(keys[0]), cosine_self_similarity(keys[1])
    return float(((a - b) ** 2).mean())


def load_dino(name: str = DEFAULT_DINO, device: Any = "cpu") -> ViTKeys:
    """DINO ViT (default ViT-B/8) from a local folder or the hub, as a :class:`ViTKeys`."""
    from transformers import AutoModel

    from i2i.metrics.hub import load_pretrained

    model = load_pretrained(AutoModel.from_pretrained, name, "structure score (DINO ViT)", "--dino",
                            add_pooling_layer=False)
    return ViTKeys(model, patch=int(getattr(model.config, "patch_size", 8)), device=device, name=name)
