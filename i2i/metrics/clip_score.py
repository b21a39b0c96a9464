"""CLIP score of an image and its prompt: 100 * max(cos(image embedding, text embedding), 0), as torchmetrics
defines it (higher is better; typical values 20-35 for matching pairs with ViT-B/32).

Any transformers ``CLIPModel`` + ``CLIPProcessor`` folder or hub id; the default, openai/clip-vit-base-patch32, is
the model the Ctrl-X evaluation uses for the FreeControl comparison. Prompts longer than the text encoder's
context are truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


def _embedding(out: Any) -> "torch.Tensor":
    """``get_*_features`` returns a tensor (transformers 4) or an output with the projection as pooler_output (5)."""
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


@dataclass
class ClipScorer:
    model: "nn.Module"
    processor: Any
    device: Any = "cpu"
    name: str = "clip"

    def __post_init__(self) -> None:
        self.model = self.model.to(self.device).eval()

    def __call__(self, image: Image.Image, prompt: str) -> float:
        import torch
        import torch.nn.functional as F

        from i2i.images import convert_image

        max_len = getattr(getattr(self.processor, "tokenizer", None), "model_max_length", 77)
        inputs = self.processor(text=[prompt], images=[convert_image(image, "RGB")], return_tensors="pt",
                                padding=True, truncation=True, max_length=min(max_len, 77))
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.no_grad():
            img = _embedding(self.model.get_image_features(pixel_values=inputs["pixel_values"]))
            txt = _embedding(self.model.get_text_features(
                input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")))
        cos = F.cosine_similarity(img.float(), txt.float()).item()
        return 100.0 * max(cos, 0.0)


def load_clip(name: str = DEFAULT_CLIP, device: Any = "cpu") -> ClipScorer:
    """CLIP model and processor from a local folder or the hub."""
    from transformers import CLIPModel, CLIPProcessor

    from i2i.metrics.hub import load_pretrained

    model = load_pretrained(CLIPModel.from_pretrained, name, "CLIP score", "--clip")
    processor = load_pretrained(CLIPProcessor.from_pretrained, name, "CLIP score", "--clip")
    return ClipScorer(model, processor, device=device, name=name)
