"""Attention processors that record what FreeControl needs while the UNet runs (PyTorch SDPA, no xformers).

* self-attention (``attn1``) of the configured decoder block: the keys, i.e. the ``to_k`` output before the
  head split, ``[B, HW, C]``;
* cross-attention (``attn2``) of the same block: the softmax(QK^T) probabilities averaged over heads, accumulated
  as a running mean (weighted by head count) for the subject mask.

A :class:`FeatureStore` says which batch rows to record and can stop the forward pass right after the last
recorded layer (the rest of the UNet is not needed for the energy), by raising :class:`StopForward`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from i2i.diffusion.attention import attention_inputs, attention_layers, attention_output, installed, split_heads


class StopForward(Exception):
    """Raised by a processor after the last layer a truncated forward pass needs."""


def default_feature_block(unet: torch.nn.Module) -> str:
    """The decoder block whose keys FreeControl uses: ``up_blocks.0`` for SDXL-style UNets (text-time added
    conditioning), ``up_blocks.1`` for SD 1.x / 2.x."""
    return "up_blocks.0" if getattr(unet.config, "addition_embed_type", None) == "text_time" else "up_blocks.1"


def block_attention_layers(unet: torch.nn.Module, block: str) -> tuple[list[str], list[str]]:
    """Names (as in ``unet.attn_processors``, without ``.processor``) of the self- and cross-attention layers of
    the transformer blocks in ``block``, in execution order: ``(attn1_names, attn2_names)``."""
    prefix = block + ".attentions."
    names = attention_layers(unet)
    attn1 = [n for n in names if n.startswith(prefix) and n.endswith("attn1")]
    attn2 = [n for n in names if n.startswith(prefix) and n.endswith("attn2")]
    return attn1, attn2


@dataclass
class FeatureStore:
    """What to record during one UNet call, and what was recorded.

    ``rows``: batch rows to record (None: all). ``record_probs``: accumulate cross-attention probabilities.
    ``stop_after``: a layer name after which the forward pass stops (:class:`StopForward`).
    ``grad_off_after``: a layer name after whose key gradient recording is switched off for the rest of the pass
    (the caller restores it, e.g. with a ``torch.enable_grad()`` block around the UNet call).
    """

    rows: list[int] | None = None
    record_keys: bool = True
    record_probs: bool = False
    stop_after: str | None = None
    grad_off_after: str | None = None
    keys: dict[str, torch.Tensor] = field(default_factory=dict)   # layer -> [b, HW, C]
    prob_sum: torch.Tensor | None = None                          # [b, HW, T], summed over heads and layers
    prob_count: int = 0                                           # heads summed into prob_sum

    def clear(self) -> None:
        self.keys.clear()
        self.prob_sum = None
        self.prob_count = 0

    def _select(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.rows is None else x[self.rows]


class RecordingAttnProcessor:
    """Scaled-dot-product attention (like diffusers' ``AttnProcessor2_0``) that also records keys or
    cross-attention probabilities of one layer into a :class:`FeatureStore`."""

    def __init__(self, name: str, store: FeatureStore, kind: str) -> None:
        if kind not in ("key", "probs"):
            raise ValueError(f"kind must be 'key' or 'probs', not {kind!r}")
        self.name = name
        self.store = store
        self.kind = kind

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        inputs = attention_inputs(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        query = attn.to_q(inputs.hidden_states)
        key = attn.to_k(inputs.context)
        value = attn.to_v(inputs.context)
        store = self.store
        if self.kind == "key" and store.record_keys:
            store.keys[self.name] = store._select(key)            # [b, HW, C], before the head split
        if store.grad_off_after == self.name:
            torch.set_grad_enabled(False)                         # nothing after this key feeds the energy

        query, key, value = split_heads(attn, query), split_heads(attn, key), split_heads(attn, value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if self.kind == "probs" and store.record_probs:
            q, k = store._select(query), store._select(key)
            probs = (q.float() @ k.float().transpose(-1, -2) * attn.scale).softmax(dim=-1)   # [b, heads, HW, T]
            summed = probs.sum(dim=1).detach()
            store.prob_sum = summed if store.prob_sum is None else store.prob_sum + summed
            store.prob_count += attn.heads

        if store.stop_after == self.name:
            raise StopForward(self.name)

        out = F.scaled_dot_product_attention(query, key, value, attn_mask=inputs.mask, dropout_p=0.0,
                                             is_causal=False, scale=attn.scale)
        return attention_output(attn, out, inputs)


@contextlib.contextmanager
def recording(unet: torch.nn.Module, store: FeatureStore, key_layers: list[str],
              prob_layers: list[str] = ()) -> Iterator[FeatureStore]:
    """Install recording processors on ``key_layers`` (attn1) and ``prob_layers`` (attn2) for the duration of
    the block; every other layer keeps its processor. The original processors are restored afterwards."""
    wanted = {name: "key" for name in key_layers} | {name: "probs" for name in prob_layers}
    with installed(unet, {name: RecordingAttnProcessor(name, store, kind) for name, kind in wanted.items()}):
        yield store


def run_until_recorded(unet: torch.nn.Module, store: FeatureStore, *args, **kwargs) -> None:
    """Call ``unet(*args, **kwargs)``; a :class:`StopForward` from ``store.stop_after`` ends it early (quietly)."""
    try:
        unet(*args, **kwargs)
    except StopForward:
        pass


def subject_token_indices(tokenizer, prompt: str, word: str) -> list[int]:
    """Positions of ``word``'s tokens in the tokenized ``prompt`` (the BOS token is position 0).

    Every occurrence counts. Raises ValueError if the word's tokens do not occur in the prompt.
    """
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length)["input_ids"]
    sub = tokenizer(word.strip(), add_special_tokens=False)["input_ids"]
    if not sub:
        raise ValueError(f"subject {word!r} has no tokens")
    found = [i + j for i in range(len(ids) - len(sub) + 1) if ids[i:i + len(sub)] == sub for j in range(len(sub))]
    if not found:
        raise ValueError(f"subject {word!r} does not occur in the prompt {prompt!r}")
    return sorted(set(found))


def prompt_token_indices(tokenizer, prompt: str) -> list[int]:
    """Positions of every word token of ``prompt`` (no BOS / EOS / padding): the mask's fallback subject."""
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length)["input_ids"]
    return list(range(1, max(2, len(ids) - 1)))
