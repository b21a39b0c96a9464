"""Where Ctrl-X injects structure and transfers appearance, for SDXL (the official map) and SD 1.x / 2.x (the same
principle applied to their layout).

The official SDXL map (``get_control_config`` in genforce/ctrl-x ``ctrl_x/utils/sdxl.py``), read as a rule over
the UNet's *attention* blocks (blocks with transformer layers), which reproduces it exactly:

* **structure**: the first decoder attention block (the coarsest decoder level that has attention): its first
  ResNet's output (conv features) and every self-attention's queries and keys;
* **appearance**: every self-attention of the last two encoder attention blocks; of the first decoder attention
  block all but its first attention; of the second decoder attention block all but its last.

SDXL's attention blocks are down 1-2 and up 0-1, so this is the official table (structure: up_blocks.0 resnet 0 and
attentions 0-2; appearance: down_blocks.1-2, up_blocks.0 attentions 1-2, up_blocks.1 attentions 0-1). SD 1.x/2.x
have attention in down 0-2 and up 1-3: the rule picks structure in up_blocks.1 (at 1/32 of the image side, the same
relative resolution as SDXL's up_blocks.0) and appearance in down 1-2, up_blocks.1 attentions 1-2 and up_blocks.2
attentions 0-1, leaving out the 1/8-resolution blocks that SDXL has no attention in either.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ControlLayers:
    """Module names: ``structure_conv`` (ResNets whose output is injected), ``structure_attn`` and
    ``appearance_attn`` (self-attention layers, as in ``unet.attn_processors`` without ``.processor``)."""

    structure_conv: tuple[str, ...]
    structure_attn: tuple[str, ...]
    appearance_attn: tuple[str, ...]

    @property
    def attention(self) -> tuple[str, ...]:
        """Every self-attention layer that Ctrl-X touches, in no particular order."""
        return tuple(sorted(set(self.structure_attn) | set(self.appearance_attn)))


def _self_attention(block_name: str, block: torch.nn.Module, keep) -> list[str]:
    """attn1 names of ``block``'s attentions whose index passes ``keep(index, count)``."""
    attentions = getattr(block, "attentions", None) or []
    names = []
    for j, attention in enumerate(attentions):
        if keep(j, len(attentions)):
            names += [f"{block_name}.attentions.{j}.transformer_blocks.{k}.attn1"
                      for k in range(len(attention.transformer_blocks))]
    return names


def control_layers(unet: torch.nn.Module) -> ControlLayers:
    """The Ctrl-X layers of ``unet`` by the rule in the module docstring (any SD-style UNet with at least one
    decoder attention block)."""
    def attention_blocks(blocks) -> list[int]:
        return [i for i, b in enumerate(blocks) if getattr(b, "attentions", None)]

    encoder, decoder = attention_blocks(unet.down_blocks), attention_blocks(unet.up_blocks)
    if not decoder:
        raise ValueError("the UNet has no decoder block with attention: Ctrl-X cannot control it")
    first = decoder[0]
    structure_attn = _self_attention(f"up_blocks.{first}", unet.up_blocks[first], lambda j, n: True)
    appearance = []
    for i in encoder[-2:]:
        appearance += _self_attention(f"down_blocks.{i}", unet.down_blocks[i], lambda j, n: True)
    appearance += _self_attention(f"up_blocks.{first}", unet.up_blocks[first], lambda j, n: j > 0)
    if len(decoder) > 1:
        second = decoder[1]
        appearance += _self_attention(f"up_blocks.{second}", unet.up_blocks[second], lambda j, n: j < n - 1)
    return ControlLayers((f"up_blocks.{first}.resnets.0",), tuple(structure_attn), tuple(appearance))
