"""PatchNCE (Park et al., ECCV 2020): the contrastive loss that keeps content in CUT/FastCUT.

For each tapped encoder layer, the same random locations are sampled from the input's features (keys) and the
output's features (queries), projected by a small MLP per layer (:class:`PatchSampleMLP`, CUT's ``netF``) and
L2-normalised; each query must pick its own key among the keys of the same image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PROJECTION_FORMAT = "i2i.cyclegan.projection"


class PatchSampleMLP(nn.Module):
    """CUT's ``netF`` (``mlp_sample``): per tapped layer, ``Linear(C, nc) -> ReLU -> Linear(nc, nc)``, modules
    named ``mlp_0``, ``mlp_1``, ... as in the reference."""

    def __init__(self, channels: Sequence[int], nc: int = 256) -> None:
        super().__init__()
        self.channels, self.nc = list(channels), nc
        for i, c in enumerate(self.channels):
            setattr(self, f"mlp_{i}", nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)))

    def config(self) -> dict:
        return {"channels": self.channels, "nc": self.nc}

    def forward(self, feats: Sequence[torch.Tensor], num_patches: int, patch_ids: Sequence[torch.Tensor] | None = None
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``feats[i]``: [B, C_i, H_i, W_i] -> ([B * P_i, nc] unit vectors, the location ids used).

        Without ``patch_ids`` each layer draws ``min(num_patches, H_i * W_i)`` locations with ``torch.randperm``
        (the global CPU generator), the same for every image of the batch.
        """
        out, ids = [], []
        for i, feat in enumerate(feats):
            flat = feat.permute(0, 2, 3, 1).flatten(1, 2)                      # [B, HW, C]
            if patch_ids is None:
                idx = torch.randperm(flat.shape[1])[:min(num_patches, flat.shape[1])].to(feat.device)
            else:
                idx = patch_ids[i]
            x = getattr(self, f"mlp_{i}")(flat[:, idx, :].flatten(0, 1))       # [B * P, nc]
            # same value as the reference's x / (sqrt(sum x^2) + 1e-7); the norm's gradient is 0 (not NaN) at x = 0
            out.append(x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + 1e-7))
            ids.append(idx)
        return out, ids


def patch_nce(feat_q: torch.Tensor, feat_k: torch.Tensor, batch: int, tau: float = 0.07) -> torch.Tensor:
    """Per-query InfoNCE loss, shape [B * P], for queries/keys ``[B * P, C]`` (rows ordered image by image).

    Positive logit q_i . k_i; negatives: the other keys of the same image (``batch`` images; pass 1 to take
    negatives from the whole batch), with the diagonal set to -10 before dividing by ``tau`` (as the reference).
    """
    feat_k = feat_k.detach()
    dim = feat_q.shape[1]
    l_pos = (feat_q * feat_k).sum(1, keepdim=True)                              # [B*P, 1]
    q, k = feat_q.view(batch, -1, dim), feat_k.view(batch, -1, dim)
    l_neg = torch.bmm(q, k.transpose(2, 1))                                     # [b, P, P]
    eye = torch.eye(q.shape[1], device=q.device, dtype=torch.bool)[None]
    l_neg = l_neg.masked_fill(eye, -10.0).view(-1, q.shape[1])
    logits = torch.cat([l_pos, l_neg], dim=1) / tau
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target, reduction="none")


def nce_loss(G: nn.Module, netF: PatchSampleMLP, src: torch.Tensor, tgt: torch.Tensor, layers: Sequence[int],
             num_patches: int, tau: float, flipped: bool = False, all_negatives: bool = False) -> torch.Tensor:
    """CUT's ``calculate_NCE_loss`` without the lambda: mean over queries per layer, averaged over the layers.

    ``tgt`` = G(``src``) (or G of the horizontally flipped ``src`` when ``flipped``: its features are flipped
    back so locations line up).
    """
    feat_q = G.encode(tgt, layers)
    if flipped:
        feat_q = [torch.flip(f, [3]) for f in feat_q]
    feat_k = G.encode(src, layers)
    k_pool, ids = netF(feat_k, num_patches)
    q_pool, _ = netF(feat_q, num_patches, ids)
    batch = 1 if all_negatives else src.shape[0]
    total = sum(patch_nce(q.float(), k.float(), batch, tau).mean() for q, k in zip(q_pool, k_pool))
    return total / len(layers)
