"""A new training method in one file: a one-sided GAN with an L1 identity term (docs/cut.md, "Writing a new
method"). tests/test_toy_method.py registers it, trains it from the CLI and runs its step in fp16 with
channels_last.

Register it and train it::

    from i2i.cyclegan.methods import register
    register("onesided", "toy_method:OneSided")      # or the class itself; or one line in REGISTRY
    # i2i cyclegan train --model onesided --lambda-idt 2
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from i2i.cyclegan.checkpoint import DISCRIMINATOR_FORMAT, GENERATOR_FORMAT
from i2i.cyclegan.losses import discriminator_loss, gan_loss
from i2i.cyclegan.methods.base import Method, Saved, lr_lambda, make_adam
from i2i.cyclegan.networks import define_D, define_G
from i2i.options import option


@dataclass(frozen=True)
class OneSidedOptions:
    """The method's own hyperparameters: each field is a flag of ``i2i cyclegan train --model onesided``."""

    lambda_idt: float = option(5.0, help="Weight of the L1 identity term |G(B) - B|.",
                               panel="One-sided GAN (--model onesided)")


class OneSided(Method):
    name = "onesided"
    loss_names = ("G", "D", "idt")
    status_names = loss_names
    Options = OneSidedOptions

    def __init__(self, config, ctx):
        super().__init__(config, ctx)                     # self.opt: a OneSidedOptions
        init = dict(init_type=config.init_type, init_gain=config.init_gain)
        self.g_cfg = config.generator
        self.d_cfg = dataclasses.replace(config.discriminator, input_nc=config.generator.output_nc)
        self.G = ctx.place(define_G(self.g_cfg, **init))  # device, memory format, DDP: the loop's
        self.D = ctx.place(define_D(self.d_cfg, **init))
        self.opt_G = make_adam(self.G.parameters(), config, ctx.device)
        self.opt_D = make_adam(self.D.parameters(), config, ctx.device)
        self.scheds = {k: torch.optim.lr_scheduler.LambdaLR(o, lr_lambda(config))
                       for k, o in (("G", self.opt_G), ("D", self.opt_D))}

    def networks(self):
        return {"G_A": Saved(self.G, GENERATOR_FORMAT, self.g_cfg.to_dict()),
                "D_A": Saved(self.D, DISCRIMINATOR_FORMAT, self.d_cfg.to_dict())}

    def train_state(self):
        return {"optimizers": {"G": self.opt_G, "D": self.opt_D}, "schedulers": self.scheds, "pools": {}}

    def step(self, real_A, real_B):
        ctx, mode, n = self.ctx, self.config.gan_mode, real_A.shape[0]
        # ---- G: fool D on G(A), keep B as it is (one call on both: one DDP call per step)
        fake, idt = ctx.forward(self.G, torch.cat([real_A, real_B])).split(n)
        self.D.requires_grad_(False)
        loss_G = gan_loss(ctx.forward(self.D, fake, ddp=False), True, mode, for_discriminator=False)
        loss_idt = (idt.float() - real_B).abs().mean() * self.opt.lambda_idt
        ctx.backward(loss_G + loss_idt, self.opt_G)       # autocast, fp16 loss scaling: the context's
        # ---- D: real B vs G(A)
        self.D.requires_grad_(True)
        pred_real, pred_fake = ctx.forward(self.D, torch.cat([real_B, fake.detach()])).split(n)
        loss_D = discriminator_loss(pred_real, pred_fake, mode)
        ctx.backward(loss_D, self.opt_D)
        self._rows = [[real_A, fake.detach()], [real_B, idt.detach()]]
        return torch.stack([loss_G, loss_D, loss_idt]).detach().float()

    def sample_rows(self):
        return self._rows
