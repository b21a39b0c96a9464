"""The reference's `--gan-mode wgangp` and `--lr-policy plateau`, against what its code does (torch's own
ReduceLROnPlateau stepped on the metric the reference never sets, and its GANLoss's wgangp branch)."""

import pytest
import torch

from i2i.cyclegan.config import TrainConfig
from i2i.cyclegan.losses import discriminator_loss, gan_loss
from i2i.cyclegan.methods.base import lr_lambda


@pytest.mark.parametrize("lr", [2e-4, 1e-6])
def test_plateau_equals_reduce_lr_on_plateau_on_a_metric_of_zero(lr):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.2, threshold=0.01, patience=5)
    factor = lr_lambda(TrainConfig(lr_policy="plateau", lr=lr))
    for epoch in range(80):                 # the LR in use during epoch `epoch` (after `epoch` scheduler steps)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr * factor(epoch), rel=1e-12), epoch
        sched.step(0)
    assert factor(7) == pytest.approx(0.2) and factor(6) == 1.0


def test_wgangp_is_the_plain_wgan_loss():
    pred = torch.tensor([[0.5, -2.0], [3.0, 1.0]])
    assert gan_loss(pred, True, "wgangp") == -pred.mean()
    assert gan_loss(pred, False, "wgangp") == pred.mean()
    assert gan_loss(pred, True, "wgangp", for_discriminator=False) == -pred.mean()
    assert discriminator_loss(pred, pred * 2, "wgangp") == 0.5 * (-pred.mean() + (pred * 2).mean())
