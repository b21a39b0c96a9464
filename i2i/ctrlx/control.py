"""Ctrl-X's feature control inside the UNet: structure injection (conv and self-attention) and
self-attention-weighted AdaIN appearance transfer, applied to the ``cond`` row only.

Before each UNet call the pipeline sets :class:`ControlState`: the batch's row names (a subset of
``structure_uncond, appearance_uncond, uncond, structure_cond, appearance_cond, cond``, in that order), whether
control is on (off for self-recurrence calls), and whether structure / appearance control is scheduled at this
step, and whose queries weight the appearance statistics (``correspondence``). Every hook reads it, so all
layers agree on which rows exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from i2i.ctrlx.layers import ControlLayers
from i2i.diffusion.attention import attention_inputs, attention_output, installed, merge_heads, split_heads

ROW_ORDER = ("structure_uncond", "appearance_uncond", "uncond", "structure_cond", "appearance_cond", "cond")


@dataclass
class ControlState:
    rows: list[str] = field(default_factory=list)
    enabled: bool = False
    structure: bool = False        # structure injection scheduled at this step
    appearance: bool = False       # appearance transfer scheduled at this step
    correspondence: str = "output"  # "structure": the structure row's queries in every appearance layer

    def row(self, name: str) -> int | None:
        return self.rows.index(name) if name in self.rows else None

    def structure_rows(self) -> tuple[int, int] | None:
        """``(structure_cond, cond)`` rows when structure injection applies to this call, else None."""
        s, c = self.row("structure_cond"), self.row("cond")
        return (s, c) if self.enabled and self.structure and s is not None and c is not None else None

    def appearance_rows(self) -> tuple[int, int] | None:
        """``(appearance_cond, cond)`` rows when appearance transfer applies to this call, else None."""
        a, c = self.row("appearance_cond"), self.row("cond")
        return (a, c) if self.enabled and self.appearance and a is not None and c is not None else None


def normalize_tokens(x: torch.Tensor) -> torch.Tensor:
    """Per row and channel across tokens: ``(x - mean) / std`` for ``x`` ``[B, N, C]`` (unbiased std and no
    epsilon, as the official code)."""
    return (x - x.mean(dim=1, keepdim=True)) / x.std(dim=1, keepdim=True)


def adain_transfer(hidden: torch.Tensor, appearance: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
                   scale: float) -> torch.Tensor:
    """Self-attention-weighted AdaIN of one output row.

    ``hidden`` ``[N, C]`` (the output row's attention input), ``appearance`` ``[M, C]`` (the appearance row's, raw),
    ``query`` ``[H, N, d]`` / ``key`` ``[H, M, d]``: projections of the *normalised* inputs that give the
    correspondence A = softmax(q k^T * scale). Per head, with V = the appearance's channels of that head:
    M = A V, S = sqrt(relu(A V^2 - M^2)), and the result is S * normalise(hidden) + M, ``[N, C]``."""
    heads = query.shape[0]
    value = appearance.reshape(appearance.shape[0], heads, -1).transpose(0, 1)             # [H, M, d]
    # One attention call for both moments (the same softmax weights): values [V, V^2].
    mean, square = F.scaled_dot_product_attention(query, key, torch.cat([value, value * value], dim=-1),
                                                  scale=scale).chunk(2, dim=-1)
    std = (square - mean * mean).relu().sqrt()
    stats_mean, stats_std = merge_heads(mean[None])[0], merge_heads(std[None])[0]        # [N, C]
    return stats_std * normalize_tokens(hidden[None])[0] + stats_mean


class CtrlXAttnProcessor:
    """Self-attention (``attn1``) with Ctrl-X's control: appearance transfer on the input (when this layer is an
    appearance layer), then queries and keys of the ``cond`` row replaced by the ``structure_cond`` row's (when it
    is a structure layer). Values stay the output's own. Otherwise plain SDPA attention."""

    def __init__(self, state: ControlState, structure: bool, appearance: bool) -> None:
        self.state, self.structure, self.appearance = state, structure, appearance

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        inputs = attention_inputs(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        structure = self.state.structure_rows() if self.structure else None
        appearance = self.state.appearance_rows() if self.appearance else None
        hs = inputs.hidden_states
        if appearance is not None:
            hs = self._transfer(attn, hs, appearance, self._lead(structure))
        query, key, value = attn.to_q(hs), attn.to_k(hs), attn.to_v(hs)
        if structure is not None:
            query, key = inject(query, structure), inject(key, structure)
        query, key, value = split_heads(attn, query), split_heads(attn, key), split_heads(attn, value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=inputs.mask, dropout_p=0.0,
                                             is_causal=False, scale=attn.scale)
        return attention_output(attn, out, inputs)

    def _lead(self, structure: tuple[int, int] | None) -> tuple[int, int] | None:
        """The structure rows whose queries lead the correspondence here: this layer's own structure injection,
        or, with ``correspondence="structure"``, the structure row whenever structure is injected at this step."""
        if structure is None and self.state.correspondence == "structure":
            return self.state.structure_rows()
        return structure

    @staticmethod
    def _transfer(attn, hs: torch.Tensor, appearance: tuple[int, int],
                  structure: tuple[int, int] | None) -> torch.Tensor:
        """``hs`` with the cond row re-normalised by the appearance row's attention-weighted statistics; the
        correspondence is structure -> appearance where ``structure`` rows are given, else output -> appearance."""
        a, c = appearance
        source = structure[0] if structure is not None else c          # the row whose q-hat is used for cond
        q = split_heads(attn, attn.to_q(normalize_tokens(hs[source:source + 1])))[0]
        k = split_heads(attn, attn.to_k(normalize_tokens(hs[a:a + 1])))[0]
        out = hs.clone()
        out[c] = adain_transfer(hs[c], hs[a], q, k, attn.scale).to(hs.dtype)
        return out


def inject(x: torch.Tensor, rows: tuple[int, int]) -> torch.Tensor:
    """``x`` with row ``rows[1]`` (cond) replaced by row ``rows[0]`` (structure_cond)."""
    source, target = rows
    out = x.clone()
    out[target] = x[source]
    return out


@contextlib.contextmanager
def controlled(unet: torch.nn.Module, layers: ControlLayers, state: ControlState) -> Iterator[ControlState]:
    """Install Ctrl-X's processors and conv hooks on ``layers`` for the duration of the block."""
    structure, appearance = set(layers.structure_attn), set(layers.appearance_attn)
    processors = {name: CtrlXAttnProcessor(state, name in structure, name in appearance) for name in layers.attention}

    def conv_hook(module, args, output):
        rows = state.structure_rows()
        return output if rows is None else inject(output, rows)

    modules = dict(unet.named_modules())
    handles = [modules[name].register_forward_hook(conv_hook) for name in layers.structure_conv]
    try:
        with installed(unet, processors):
            yield state
    finally:
        for handle in handles:
            handle.remove()
