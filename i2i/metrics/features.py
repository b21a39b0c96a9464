"""A pluggable feature extractor: any ``nn.Module`` that maps an image batch to vectors, plus the plumbing.

:class:`FeatureExtractor` takes PIL images or tensors in [-1, 1] and turns them into what the wrapped network
expects: RGB (grayscale repeated, transparency composited on white), resized to its input size, in its value range
(``uint8`` 0-255, ``unit`` [0, 1], ``signed`` [-1, 1] or ``imagenet``: [0, 1] normalised with the ImageNet
mean/std), in batches on its device. It returns float64 features ``[N, D]`` on the CPU. A network output of
``[N, D, 1, 1]`` is flattened; a tuple output (torch-fidelity's Inception) uses its first element.

Any network works, e.g. ``FeatureExtractor(my_net, name="my-net", size=224, value_range="imagenet")``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from PIL import Image

from i2i.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

VALUE_RANGES = ("uint8", "unit", "signed", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Images = Union[Sequence[Image.Image], "torch.Tensor"]


@dataclass
class FeatureExtractor:
    """``model``: images ``[N, 3, H, W]`` -> features ``[N, D]``. ``size``: side (or (H, W)) every image is
    resized to first, None to keep sizes (images of one size are then batched together). ``name`` is what
    summaries record."""

    model: "nn.Module"
    name: str
    size: int | tuple[int, int] | None = None
    value_range: str = "unit"
    batch_size: int = 32
    device: "torch.device | str" = "cpu"

    def __post_init__(self) -> None:
        if self.value_range not in VALUE_RANGES:
            raise UsageError(f"value_range {self.value_range!r}: use one of {', '.join(VALUE_RANGES)}")
        if self.batch_size < 1:
            raise UsageError("batch_size must be at least 1")
        self.model = self.model.to(self.device).eval()

    def __call__(self, images: Images | Iterable[Image.Image]) -> "torch.Tensor":
        """Features ``[N, D]`` (float64, CPU) of PIL images or of a tensor ``[N, C, H, W]`` in [-1, 1]."""
        import torch

        out = [self.features_of_batch(batch) for batch in self._batches(images)]
        if not out:
            raise UsageError(f"{self.name}: no images to extract features from")
        return torch.cat(out)

    def features_of_batch(self, x: "torch.Tensor") -> "torch.Tensor":
        """Features of one batch ``[N, C, H, W]`` in [-1, 1] (C = 1, 3 or 4)."""
        import torch

        x = self.prepare(x)
        with torch.no_grad():
            y = self.model(x)
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y.reshape(y.shape[0], -1).double().cpu()

    def prepare(self, x: "torch.Tensor") -> "torch.Tensor":
        """RGB, resized, in the model's value range, on its device."""
        import torch
        import torch.nn.functional as F

        x = to_rgb(x.float()).to(self.device)
        if self.size is not None:
            size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        unit = ((x.clamp(-1, 1) + 1) / 2)
        if self.value_range == "uint8":
            return (unit * 255).round().to(torch.uint8)
        if self.value_range == "unit":
            return unit
        if self.value_range == "signed":
            return unit * 2 - 1
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return (unit - mean) / std

    def _batches(self, images: Images | Iterable[Image.Image]) -> Iterator["torch.Tensor"]:
        """Batches of at most ``batch_size`` images of one size, in input order."""
        import torch

        if isinstance(images, torch.Tensor):
            if images.dim() != 4:
                raise UsageError(f"{self.name}: expected images [N, C, H, W], got shape {tuple(images.shape)}")
            for i in range(0, images.shape[0], self.batch_size):
                yield images[i:i + self.batch_size]
            return
        group: list[torch.Tensor] = []
        for img in images:
            t = pil_to_signed(img)
            if group and (t.shape != group[0].shape or len(group) == self.batch_size):
                yield torch.stack(group)
                group = []
            group.append(t)
        if group:
            yield torch.stack(group)


def pil_to_signed(img: Image.Image) -> "torch.Tensor":
    """A PIL image of any mode -> RGB tensor ``[3, H, W]`` in [-1, 1] (alpha composited on white)."""
    from i2i.images import convert_image, image_to_tensor

    return image_to_tensor(convert_image(img, "RGB"))


def to_rgb(x: "torch.Tensor") -> "torch.Tensor":
    """``[N, C, H, W]`` in [-1, 1] with C = 1 (gray), 3 or 4 (RGBA, composited on white) -> ``[N, 3, H, W]``."""
    channels = x.shape[1]
    if channels == 3:
        return x
    if channels == 1:
        return x.expand(-1, 3, -1, -1)
    if channels == 4:
        alpha = (x[:, 3:4] + 1) / 2
        return x[:, :3] * alpha + (1 - alpha)      # white is +1
    raise UsageError(f"images with {channels} channels are not supported (use 1, 3 or 4)")
