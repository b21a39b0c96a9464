"""Text conditioning of a UNet call: prompt embeddings (plus SDXL's pooled embeddings and size ids)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Conditioning:
    """Text conditioning for ``B`` samples: ``embeds`` ``[B, T, D]``; SDXL adds ``pooled`` ``[B, P]`` and
    ``time_ids`` ``[B, 6]``. ``negative`` holds the same for classifier-free guidance (None without CFG)."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None
    negative: "Conditioning | None" = None

    def expand(self, n: int) -> "Conditioning":
        """Each row repeated ``n`` times (``[B, ...]`` -> ``[B * n, ...]``)."""
        rep = lambda x: None if x is None else x.repeat_interleave(n, dim=0)  # noqa: E731
        return Conditioning(rep(self.embeds), rep(self.pooled), rep(self.time_ids),
                            None if self.negative is None else self.negative.expand(n))

    def positive(self) -> "Conditioning":
        return Conditioning(self.embeds, self.pooled, self.time_ids)

    def with_negative(self) -> "Conditioning":
        """``[negative rows; positive rows]`` as one conditioning (the CFG batch layout)."""
        return Conditioning.stack([self.negative, self])

    @staticmethod
    def stack(parts: list["Conditioning"]) -> "Conditioning":
        """Rows of ``parts`` one after another (their ``negative`` parts are dropped)."""
        cat = lambda xs: None if xs[0] is None else torch.cat(xs)  # noqa: E731
        return Conditioning(cat([p.embeds for p in parts]), cat([p.pooled for p in parts]),
                            cat([p.time_ids for p in parts]))

    def unet_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.embeds}
        if self.pooled is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return kwargs
