"""Paired self-attention for the demo model's training: the first ``pairs`` rows of a batch come in pairs (rows
2i and 2i + 1), and in every self-attention each of them attends to its own tokens and its partner's (keys and
values concatenated, as cross-frame attention in video models). The other rows attend to themselves only.

Used only while training (``DemoTrainConfig.pair_share``): the trained UNet is a plain UNet. What it should learn
is a correspondence between two images in which an object's tokens find the other image's object and the ground's
tokens its ground, which Ctrl-X's appearance transfer reads (docs/demo-model.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from i2i.diffusion.attention import attention_inputs, attention_layers, attention_output, installed, split_heads


class PairedSelfAttention:
    """One processor for all ``attn1`` layers: the batch's first ``rows`` (even) attend in pairs. (The UNet's
    self-attention takes no mask.)"""

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        inputs = attention_inputs(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        hs, p = inputs.hidden_states, self.rows
        query, key, value = (split_heads(attn, f(hs)) for f in (attn.to_q, attn.to_k, attn.to_v))
        partner = torch.arange(p, device=hs.device) ^ 1                   # 0<->1, 2<->3, ...
        paired = F.scaled_dot_product_attention(query[:p], torch.cat([key[:p], key[partner]], dim=2),
                                                torch.cat([value[:p], value[partner]], dim=2), scale=attn.scale)
        single = F.scaled_dot_product_attention(query[p:], key[p:], value[p:], scale=attn.scale)
        return attention_output(attn, torch.cat([paired, single]), inputs)


@contextlib.contextmanager
def paired(unet: torch.nn.Module, rows: int) -> Iterator[None]:
    """Run ``unet`` with its first ``rows`` batch rows (even) attending in pairs; nothing changes when 0."""
    if rows % 2:
        raise ValueError(f"paired rows come two by two, got {rows}")
    if rows == 0:
        yield
        return
    proc = PairedSelfAttention(rows)
    with installed(unet, {name: proc for name in attention_layers(unet) if name.endswith("attn1")}):
        yield
