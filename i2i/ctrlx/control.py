"""Ctrl-X's feature control inside the UNet: structure injection (conv and self-attention) and
self-attention-weighted AdaIN appearance transfer, applied to the output's ``cond`` row only.

The official code runs the structure, appearance and output rows in one batch and copies features between rows.
The reference rows are never modified, so the same results come from two kinds of UNet call per step:

* a **record** pass of one reference branch (its ``cond`` row, plus its ``uncond`` row when the branch is
  generated from the prompt): the hooks store what the output will need (the structure's ResNet output and
  self-attention queries/keys, the appearance's self-attention inputs and normalised keys). A branch given as an
  image needs nothing after its last controlled layer, so its pass stops there (:class:`StopForward`), which saves
  the decoder's high-resolution tail;
* an **apply** pass of the output's ``[uncond, cond]`` rows: the hooks put the stored features into the ``cond``
  row (the ``uncond`` row is never touched).

:class:`ControlState` says which pass runs and whether structure / appearance control is scheduled at this step;
every hook reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from i2i.ctrlx.layers import ControlLayers
from i2i.diffusion.attention import attention_inputs, attention_output, installed, merge_heads, split_heads

# The rows of the official single batch, in its order (reported per step in ``CtrlXOutput.rows``).
ROW_ORDER = ("structure_uncond", "appearance_uncond", "uncond", "structure_cond", "appearance_cond", "cond")
COND_ROW = 1                       # the output's cond row in the apply pass ([uncond, cond])


class StopForward(Exception):
    """Raised inside the UNet once a record pass has stored every feature it was asked for."""


@dataclass
class ControlState:
    mode: str = "off"              # "off" (plain UNet), "record" (a reference pass) or "apply" (the output pass)
    branch: str = ""               # record: "structure" or "appearance"
    row: int = 0                   # record: the branch's cond row in the batch
    structure: bool = False        # structure injection scheduled at this step
    appearance: bool = False       # appearance transfer scheduled at this step
    features: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    stop_after: frozenset[tuple[str, str]] | None = None     # record: stop once these are stored (None: run on)

    def recording(self, branch: str) -> bool:
        return self.mode == "record" and self.branch == branch

    def store(self, key: tuple[str, str], value: torch.Tensor) -> None:
        self.features[key] = value

    def maybe_stop(self) -> None:
        if self.stop_after is not None and self.stop_after <= self.features.keys():
            raise StopForward

    def stored(self, name: str, kind: str) -> torch.Tensor | None:
        return self.features.get((name, kind)) if self.mode == "apply" else None


def wanted(layers: ControlLayers, branch: str, structure: bool, appearance: bool) -> frozenset[tuple[str, str]]:
    """The features a record pass of ``branch`` stores at a step with the given schedules on."""
    keys: set[tuple[str, str]] = set()
    if branch == "structure" and structure:
        keys |= {(name, "conv") for name in layers.structure_conv}
        keys |= {(name, kind) for name in layers.structure_attn for kind in ("q", "k")}
        if appearance:
            keys |= {(name, "qn") for name in layers.structure_attn if name in layers.appearance_attn}
    if branch == "appearance" and appearance:
        keys |= {(name, kind) for name in layers.appearance_attn for kind in ("hs", "kn")}
    return frozenset(keys)


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
    mean = F.scaled_dot_product_attention(query, key, value, scale=scale)
    square = F.scaled_dot_product_attention(query, key, value * value, scale=scale)
    std = (square - mean * mean).relu().sqrt()
    stats_mean, stats_std = merge_heads(mean[None])[0], merge_heads(std[None])[0]        # [N, C]
    return stats_std * normalize_tokens(hidden[None])[0] + stats_mean


def _heads(attn, x: torch.Tensor) -> torch.Tensor:
    """One row ``[N, C]`` -> ``[heads, N, C / heads]``."""
    return split_heads(attn, x[None])[0]


def _with_row(x: torch.Tensor, row: int, value: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[row] = value.to(x.dtype)
    return out


class CtrlXAttnProcessor:
    """Self-attention (``attn1``) of layer ``name`` with Ctrl-X's control. Record pass: plain attention, storing the
    reference row's features. Apply pass: appearance transfer on the cond row's input (appearance layers), then its
    queries and keys replaced by the structure's (structure layers); values stay the output's own."""

    def __init__(self, state: ControlState, name: str, structure: bool, appearance: bool) -> None:
        self.state, self.name, self.structure, self.appearance = state, name, structure, appearance

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        inputs = attention_inputs(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        state, hs = self.state, inputs.hidden_states
        structure, appearance = self.structure and state.structure, self.appearance and state.appearance
        if appearance and state.stored(self.name, "hs") is not None:
            hs = _with_row(hs, COND_ROW, self._transfer(attn, hs[COND_ROW], structure))
        query, key, value = attn.to_q(hs), attn.to_k(hs), attn.to_v(hs)
        if state.mode == "record":
            self._record(attn, hs, query, key, structure, appearance)
        elif structure and state.stored(self.name, "q") is not None:
            query = _with_row(query, COND_ROW, state.stored(self.name, "q"))
            key = _with_row(key, COND_ROW, state.stored(self.name, "k"))
        query, key, value = split_heads(attn, query), split_heads(attn, key), split_heads(attn, value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=inputs.mask, dropout_p=0.0,
                                             is_causal=False, scale=attn.scale)
        return attention_output(attn, out, inputs)

    def _record(self, attn, hs: torch.Tensor, query: torch.Tensor, key: torch.Tensor, structure: bool,
                appearance: bool) -> None:
        state, row = self.state, self.state.row
        if structure and state.recording("structure"):
            state.store((self.name, "q"), query[row])
            state.store((self.name, "k"), key[row])
            if appearance:      # the correspondence of appearance transfer starts from the structure here
                state.store((self.name, "qn"), attn.to_q(normalize_tokens(hs[row:row + 1]))[0])
        if appearance and state.recording("appearance"):
            state.store((self.name, "hs"), hs[row])
            state.store((self.name, "kn"), attn.to_k(normalize_tokens(hs[row:row + 1]))[0])
        state.maybe_stop()

    def _transfer(self, attn, hidden: torch.Tensor, structure: bool) -> torch.Tensor:
        """The cond row's input re-normalised by the appearance's attention-weighted statistics; the correspondence
        is structure -> appearance where structure is injected here, else output -> appearance."""
        state = self.state
        query = state.stored(self.name, "qn") if structure else None
        if query is None:
            query = attn.to_q(normalize_tokens(hidden[None]))[0]
        return adain_transfer(hidden, state.stored(self.name, "hs"), _heads(attn, query),
                              _heads(attn, state.stored(self.name, "kn")), attn.scale)


def _conv_hook(state: ControlState, name: str):
    """Forward hook of a structure ResNet: records the structure row's output, or puts it into the cond row."""
    def hook(module, args, output):
        if not state.structure:
            return output
        if state.recording("structure"):
            state.store((name, "conv"), output[state.row])
            state.maybe_stop()
            return output
        stored = state.stored(name, "conv")
        return output if stored is None else _with_row(output, COND_ROW, stored)
    return hook


@contextlib.contextmanager
def controlled(unet: torch.nn.Module, layers: ControlLayers, state: ControlState) -> Iterator[ControlState]:
    """Install Ctrl-X's processors and conv hooks on ``layers`` for the duration of the block."""
    structure, appearance = set(layers.structure_attn), set(layers.appearance_attn)
    processors = {name: CtrlXAttnProcessor(state, name, name in structure, name in appearance)
                  for name in layers.attention}
    modules = dict(unet.named_modules())
    handles = [modules[name].register_forward_hook(_conv_hook(state, name)) for name in layers.structure_conv]
    try:
        with installed(unet, processors):
            yield state
    finally:
        for handle in handles:
            handle.remove()
