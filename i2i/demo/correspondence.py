"""A correspondence loss for the demo model's training: in the layers where Ctrl-X transfers appearance, the
correspondence it reads between two images, A = softmax(q̂ k̂ᵀ / √d) with q̂ and k̂ the layer's own query and key
projections of the token-normalised inputs (:func:`i2i.ctrlx.control.adain_transfer`), should send an object's
tokens to the other image's object and the ground's tokens to its ground.

On Stable Diffusion this correspondence is semantic without being asked for (its features match parts across
images); the demo model, trained on 30 000 images of shapes, learnt one that leaks (docs/demo-model.md: in
``down_blocks.1`` the ground's tokens put twice chance on the other image's object). Used only while training
(``DemoTrainConfig.match_weight``): the batch's pair rows come in groups of four with one noise level, rows 4j and
4j + 1 one look in two layouts, 4j + 2 and 4j + 3 another, and each row is matched with its pair partner (same
look) and with the row two away (another look), so the match has to go by what is object and what is ground, not
by colour. The trained UNet is a plain UNet and its attention is unchanged: the loss only reads it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from i2i.ctrlx.control import normalize_tokens
from i2i.ctrlx.layers import control_layers
from i2i.diffusion.attention import attention_inputs, attention_output, installed, split_heads

GROUP = 4                 # rows that share a noise level: two pairs of two looks


def region_tokens(cover: torch.Tensor, tokens: int) -> torch.Tensor:
    """``[R, N]`` True where a token of a square ``tokens``-token grid is at least half object (``cover``
    ``[R, h, w]``: the object's coverage of each latent pixel)."""
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"{tokens} tokens: not a square grid")
    return F.adaptive_avg_pool2d(cover[:, None], side).flatten(1) >= 0.5


def match_loss(attn, hidden: torch.Tensor, obj: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """Mean over rows and heads of -log(the share of A that a token puts on its own region of the partner row),
    object tokens and ground tokens weighted half and half. ``hidden`` ``[R, N, C]`` (the layer's attention input),
    ``obj`` ``[R, N]``, ``partner`` ``[R]`` row indices. Rows whose region, or whose partner's, is empty at this
    grid are left out; 0 if none is left."""
    normed = normalize_tokens(hidden)
    q, k = split_heads(attn, attn.to_q(normed)), split_heads(attn, attn.to_k(normed))      # [R, H, N, d]
    logp = (q @ k[partner].transpose(-1, -2) * attn.scale).float().log_softmax(-1)        # [R, H, N, N]
    same = obj[:, :, None] == obj[partner][:, None, :]                                     # [R, N, N]
    mass = logp.masked_fill(~same[:, None], float("-inf")).logsumexp(-1)                  # [R, H, N]
    shares = []
    for region in (obj, ~obj):
        count = region.sum(1)
        keep = (count > 0) & (region[partner].sum(1) > 0)
        mean = torch.where(region[:, None], mass, 0.0).sum(-1) / count.clamp(min=1)[:, None]   # [R, H]
        shares.append(torch.where(keep[:, None], mean, torch.nan))
    per_row = -(shares[0] + shares[1]) / 2                                                  # [R, H]
    valid = per_row[~per_row.isnan()]
    return valid.mean() if valid.numel() else hidden.new_zeros(())


class MatchingAttention:
    """Plain self-attention for every row, plus :func:`match_loss` of the first ``rows`` (groups of
    :data:`GROUP`) against their pair partner and the row two away, appended to ``losses``."""

    def __init__(self, cover: torch.Tensor) -> None:
        rows = cover.shape[0]
        if rows % GROUP:
            raise ValueError(f"matched rows come in groups of {GROUP}, got {rows}")
        self.cover, self.losses = cover, []
        index = torch.arange(rows, device=cover.device)
        self.partners = (index ^ 1, index ^ 2)

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        inputs = attention_inputs(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        hs = inputs.hidden_states
        query, key, value = (split_heads(attn, f(hs)) for f in (attn.to_q, attn.to_k, attn.to_v))
        out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        rows = hs[: self.cover.shape[0]]
        obj = region_tokens(self.cover, hs.shape[1])
        self.losses += [match_loss(attn, rows, obj, p) for p in self.partners]
        return attention_output(attn, out, inputs)


@contextlib.contextmanager
def matching(unet: torch.nn.Module, cover: torch.Tensor | None) -> Iterator[MatchingAttention | None]:
    """Run ``unet`` with :class:`MatchingAttention` on Ctrl-X's appearance layers (``cover`` ``[R, h, w]``: the
    first R rows' object coverage); yields it (its ``losses`` fill during the forward), or None when ``cover`` is
    None and nothing changes."""
    if cover is None:
        yield None
        return
    proc = MatchingAttention(cover)
    with installed(unet, {name: proc for name in control_layers(unet).appearance_attn}):
        yield proc
