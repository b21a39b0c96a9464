"""GAN objectives (lsgan, vanilla, wgangp, hinge) as pure functions of discriminator outputs (logits / scores)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def gan_loss(pred: torch.Tensor, target_is_real: bool, mode: str, for_discriminator: bool = True) -> torch.Tensor:
    """Adversarial loss of discriminator output ``pred`` ([B, 1, h, w] patch scores) against real/fake.

    - ``lsgan``: mean squared error to 1 (real) or 0 (fake) — the reference default.
    - ``vanilla``: binary cross-entropy on logits.
    - ``wgangp``: ``-mean(pred)`` for real, ``mean(pred)`` for fake (the reference's; its CycleGAN and CUT
      training never add the gradient penalty, so this is the plain WGAN loss).
    - ``hinge``: discriminator ``relu(1 - pred)`` / ``relu(1 + pred)``; generator ``-pred``.
    """
    pred = pred.float()
    if mode == "lsgan":
        target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
        return F.mse_loss(pred, target)
    if mode == "vanilla":
        target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
        return F.binary_cross_entropy_with_logits(pred, target)
    if mode == "wgangp":
        return -pred.mean() if target_is_real else pred.mean()
    if mode == "hinge":
        if not for_discriminator:
            return -pred.mean()
        return F.relu(1.0 - pred).mean() if target_is_real else F.relu(1.0 + pred).mean()
    raise ValueError(f"unknown gan mode {mode!r}")


def discriminator_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor, mode: str) -> torch.Tensor:
    """0.5 * (loss on real + loss on fake), as in the reference's backward_D_basic."""
    return 0.5 * (gan_loss(pred_real, True, mode) + gan_loss(pred_fake, False, mode))


def score_real_and_fake(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                        fuse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator ``D``'s patch scores of ``real`` and ``fake`` ([B, C, H, W] each): one call on both stacked
    when ``fuse`` and the shapes agree (only valid for a per-sample norm: instance or none), else two calls."""
    if fuse and real.shape == fake.shape:
        pred_real, pred_fake = D(torch.cat([real, fake])).split(real.shape[0])
        return pred_real, pred_fake
    return D(real), D(fake)
