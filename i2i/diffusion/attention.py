"""Attention processors that record or replace features while the UNet runs (PyTorch SDPA, no xformers).

A method writes a processor class whose ``__call__`` is: :func:`attention_inputs` (diffusers' own
``AttnProcessor2_0`` preamble: spatial norm, flattening, mask, group norm), its own work on the projections, and
:func:`attention_output` (output projection, residual, rescale). :func:`installed` puts processors on named
layers for the duration of a block and restores the originals; :func:`split_heads` / :func:`merge_heads` convert
between ``[B, N, C]`` and ``[B, heads, N, C / heads]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch


def attention_layers(unet: torch.nn.Module) -> list[str]:
    """Names of every attention layer of ``unet`` (as in ``unet.attn_processors``, without ``.processor``)."""
    return [n[: -len(".processor")] for n in unet.attn_processors]


@contextlib.contextmanager
def installed(unet: torch.nn.Module, processors: dict[str, object]) -> Iterator[None]:
    """Install ``processors`` (layer name -> processor) for the duration of the block; every other layer keeps its
    processor, and the original processors are restored afterwards."""
    original = dict(unet.attn_processors)
    unet.set_attn_processor({full: processors.get(full[: -len(".processor")], proc)
                             for full, proc in original.items()})
    try:
        yield
    finally:
        unet.set_attn_processor(original)


@dataclass
class AttentionInputs:
    """The preamble's results: ``hidden_states`` ``[B, N, C]`` after the norms, the ``context`` the keys and values
    come from (``hidden_states`` for self-attention), the reshaped ``mask``, and what the output needs back."""

    hidden_states: torch.Tensor
    context: torch.Tensor
    mask: torch.Tensor | None
    residual: torch.Tensor
    shape: tuple[int, ...] | None      # (b, ch, h, w) of a spatial input, else None

    @property
    def batch(self) -> int:
        return self.hidden_states.shape[0]


def attention_inputs(attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                     attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None) -> AttentionInputs:
    """What diffusers' ``AttnProcessor2_0`` does before the projections."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    shape = None
    if hidden_states.ndim == 4:
        b, ch, h, w = hidden_states.shape
        shape = (b, ch, h, w)
        hidden_states = hidden_states.view(b, ch, h * w).transpose(1, 2)
    batch = hidden_states.shape[0]
    context_len = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape[1]
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, context_len, batch)
        attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    return AttentionInputs(hidden_states, encoder_hidden_states, attention_mask, residual, shape)


def split_heads(attn, x: torch.Tensor) -> torch.Tensor:
    """``[B, N, C]`` -> ``[B, heads, N, C / heads]``."""
    return x.view(x.shape[0], -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, heads, N, d]`` -> ``[B, N, heads * d]``."""
    b, heads, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, heads * d)


def attention_output(attn, out: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
    """What ``AttnProcessor2_0`` does after the attention: ``out`` ``[B, heads, N, d]`` through the output
    projection, back to the input's layout, plus the residual, divided by the rescale factor."""
    out = merge_heads(out).to(out.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if inputs.shape is not None:
        b, ch, h, w = inputs.shape
        out = out.transpose(-1, -2).reshape(b, ch, h, w)
    if attn.residual_connection:
        out = out + inputs.residual
    return out / attn.rescale_output_factor
