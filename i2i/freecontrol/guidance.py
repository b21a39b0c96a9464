"""FreeControl's guidance math as pure functions: PCA bases, semantic coordinates, the cross-attention mask, the
structure and appearance energies, the warm-up weight and the guided DDIM update.

Shapes: ``B`` samples, ``HW`` spatial tokens of the feature layer, ``C`` key channels, ``K`` PCA components,
``T`` text tokens. Every function is differentiable where the energy needs it; nothing here holds state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Added to a denominator that can be zero (a constant component, an empty appearance weight).
EPS = 1e-5


def pca_basis(features: torch.Tensor, n_components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal directions of ``features`` ``[N, C]`` after mean-centring (plain SVD, no whitening).

    Returns ``mean`` ``[C]`` and ``basis`` ``[K, C]`` with ``K = min(n_components, rank)``; rows are orthonormal and
    ordered by decreasing variance. Computed in float32. The rank is that of the centred features (at most
    ``min(N - 1, C)``: centring removes one dimension), counted as NumPy's ``matrix_rank`` does (singular values
    above ``max(N, C) * eps`` times the largest); the directions beyond it carry no variance, only rounding, so
    SVD returns arbitrary ones that differ from machine to machine, and a key's coordinate on them would steer the
    guidance at random. They occur only with few seed features (N = seed images x tokens of the feature block),
    never with SD's (20 x 256 or more, against 640-1280 key channels).
    """
    x = features.float()
    mean = x.mean(dim=0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    rank = int((s > s[0] * max(x.shape) * torch.finfo(torch.float32).eps).sum()) if len(s) else 0
    k = min(n_components, rank)
    return mean, vh[:k].contiguous()


def semantic_coordinates(keys: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor,
                         n_components: int | None = None) -> torch.Tensor:
    """Project keys on the semantic bases: ``(keys - mean) @ basis[:n].T``.

    keys ``[B, HW, C]``, mean ``[C]``, basis ``[K, C]`` -> coordinates ``[B, HW, n]`` (``n = n_components or K``).
    """
    if n_components is not None:
        basis = basis[:n_components]
    return (keys.float() - mean.float()) @ basis.float().T


# A component whose spread is below this fraction of the largest component's is constant up to float32 rounding.
FLAT_RTOL = 1e-5


def minmax_normalize(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Scale ``x`` to [0, 1] along ``dim`` (for coordinates ``[B, HW, K]``: per sample and component over positions).

    The minimum and maximum are detached, as in the official code, so gradients flow only through ``x``.
    A constant slice maps to 0 (no gradient), and so does a slice whose spread is below ``FLAT_RTOL`` times the
    largest spread along the last dimension (the components): such a component is constant in exact arithmetic,
    e.g. the direction the keys cannot take when the basis holds every key channel (the keys are a linear map of
    a LayerNorm output, whose channels sum to zero, so they span one dimension fewer than they have). Stretched to
    [0, 1], its rounding noise would weigh as much as the leading components in the energy, with gradients
    ``1 / spread`` times the others', and make the guided result depend on the machine's summation order (the demo
    model: 64 key channels, 64 components). Components this flat never occur with SD's 1280 key channels.
    """
    lo = x.amin(dim=dim, keepdim=True).detach()
    hi = x.amax(dim=dim, keepdim=True).detach()
    spread = hi - lo
    flat = spread <= FLAT_RTOL * spread.amax(dim=-1, keepdim=True)
    return torch.where(flat, torch.zeros_like(x), (x - lo) / spread.clamp_min(1e-12))


def cross_attention_mask(probs: torch.Tensor, token_indices: list[int], threshold: float) -> torch.Tensor:
    """The subject mask M from (head/layer/step-averaged) cross-attention probabilities.

    probs ``[HW, T]`` (rows: spatial positions), summed over the subject's ``token_indices``, min-max normalised
    over positions, then ``> threshold`` -> float mask ``[HW]`` of 0/1. A map with no contrast (all equal) gives an
    all-ones mask. The probabilities come from the cross-attention of the same block as the keys, so the mask is
    already at the keys' resolution (the official code's bicubic resize is never needed).
    """
    heat = probs[:, token_indices].float().sum(dim=1)
    lo, hi = heat.min(), heat.max()
    if not bool(hi > lo):
        return torch.ones_like(heat)
    heat = (heat - lo) / (hi - lo)
    return (heat > threshold).float()


def structure_energy(coords_cond: torch.Tensor, coords_gen: torch.Tensor, mask: torch.Tensor | None,
                     penalty: float) -> torch.Tensor:
    """g_s: keep the generated sample's semantic layout on the condition's inside the mask, and keep it from
    growing outside the mask beyond what the condition shows there.

    coords_cond ``[HW, K]`` (normalised coordinates of the inverted condition), coords_gen ``[B, HW, K]``,
    mask ``[HW]`` of 0/1 (None: image-to-image, plain MSE over every position and component).

    With a mask (official ``penalty_type: max``):
      forward = mean over masked (b, position, component) of ``(gen - cond)^2``;
      tau_k = max over positions of ``cond_k * (1 - M)``;
      backward = ``penalty`` * mean over all (b, position, component) of ``relu(gen * (1 - M) - tau)^2``.
    Returns the scalar ``forward + backward`` (an empty mask contributes 0 to the forward term).
    """
    cond = coords_cond.unsqueeze(0).expand_as(coords_gen)
    if mask is None:
        return F.mse_loss(coords_gen, cond)
    m = mask.to(coords_gen.dtype)[None, :, None]                   # [1, HW, 1]
    inside = m.expand_as(coords_gen).bool()
    forward = F.mse_loss(coords_gen[inside], cond[inside]) if bool(inside.any()) else coords_gen.sum() * 0
    tau = (coords_cond * (1 - m[0])).amax(dim=0)                   # [K]
    excess = F.relu(coords_gen * (1 - m) - tau)
    return forward + penalty * excess.pow(2).mean()


def appearance_vectors(keys: torch.Tensor, coords: torch.Tensor, n_components: int = 2,
                       threshold: float = 0.5) -> torch.Tensor:
    """Appearance vectors: keys averaged with weights from the first ``n_components`` normalised coordinates.

    keys ``[B, HW, C]``, coords ``[B, HW, K]`` in [0, 1] -> ``[B, n, C]``, where
    ``v_k = sum_hw key_hw * w_hw,k / (sum_hw w_hw,k + 1e-5)`` and ``w = s * [s > threshold]``.
    """
    w = coords[:, :, :n_components]
    w = w * (w > threshold).to(w.dtype)
    num = torch.einsum("bpk,bpc->bkc", w, keys.float())
    return num / (w.sum(dim=1).unsqueeze(-1) + EPS)


def appearance_energy(vectors_gen: torch.Tensor, vectors_ref: torch.Tensor) -> torch.Tensor:
    """g_a: MSE between the guided sample's appearance vectors ``[B, n, C]`` and the unguided sibling's (detached)."""
    return F.mse_loss(vectors_gen, vectors_ref.detach())


def warmup_weight(step: int, weight: float, warmup_steps: int) -> float:
    """The structure weight at step index ``step``: ramps linearly from 0 (step 0 is unguided) over
    ``warmup_steps`` steps, then stays at ``weight``."""
    if warmup_steps > 0 and step < warmup_steps:
        return weight * step / warmup_steps
    return weight


def guided_update(prev_sample: torch.Tensor, grad: torch.Tensor, alpha_prod_t: float,
                  alpha_prod_t_prev: float) -> torch.Tensor:
    """Apply the energy gradient to a DDIM (eta = 0) step the way the official scheduler does.

    The official step replaces the noise prediction by ``eps' = eps - sqrt(1 - a_t) * grad`` in the direction term
    only (x0 stays the one from the unguided eps), so the net change of ``x_{t-1}`` is
    ``- sqrt(1 - a_{t-1}) * sqrt(1 - a_t) * grad``. prev_sample and grad: ``[B, C, h, w]``.
    """
    return prev_sample - math.sqrt(1 - alpha_prod_t_prev) * math.sqrt(1 - alpha_prod_t) * grad
