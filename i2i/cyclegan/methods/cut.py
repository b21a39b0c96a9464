"""CUT and FastCUT (Park, Efros, Zhang, Zhu, ECCV 2020): one-sided translation A -> B with PatchNCE.

One step is the reference's ``optimize_parameters``: G forward (on cat(A, B) for CUT's identity NCE; FastCUT
flips the input with p = 0.5), then a D step (LSGAN on real B vs G(A)), then one G + F step on
``lambda_GAN * GAN + NCE`` where NCE is ``lambda_NCE * PatchNCE(A, G(A))``, averaged with
``lambda_NCE * PatchNCE(B, G(B))`` for CUT.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from i2i.cyclegan.checkpoint import DISCRIMINATOR_FORMAT, GENERATOR_FORMAT
from i2i.cyclegan.config import TrainConfig
from i2i.cyclegan.data import Preprocess
from i2i.cyclegan.losses import gan_loss, score_real_and_fake
from i2i.cyclegan.methods.base import Method, Saved, StepContext, lr_lambda, make_adam
from i2i.cyclegan.networks import ResnetGenerator, define_D, define_G, init_weights
from i2i.cyclegan.patchnce import PROJECTION_FORMAT, PatchSampleMLP, nce_loss
from i2i.errors import UsageError
from i2i.options import flag, option

PANEL = "CUT / FastCUT (--model cut|fastcut)"


def parse_layers(text: str) -> list[int]:
    try:
        layers = sorted({int(v) for v in str(text).split(",") if v.strip()})
    except ValueError:
        layers = []
    if not layers or layers[0] < 0:
        raise UsageError(f"{flag(CUTOptions, 'nce_layers')} {text!r}: give comma-separated layer indices, "
                         "e.g. 0,4,8,12,16")
    return layers


@dataclass(frozen=True)
class CUTOptions:
    """CUT's own hyperparameters (the reference's defaults for --model cut; FastCUT changes three)."""

    lambda_gan: float = option(1.0, help="GAN loss weight.", panel=PANEL)
    lambda_nce: float = option(1.0, help="PatchNCE loss weight.", panel=PANEL)
    nce_idt: bool = option(True, help="Identity NCE on B -> G(B).", panel=PANEL)
    flip_equivariance: bool = option(False, help="Flip G's input at random and its NCE features back.",
                                     panel=PANEL)
    nce_layers: str = option("0,4,8,12,16", help="Generator layer indices for PatchNCE.", panel=PANEL)
    num_patches: int = option(256, help="Locations sampled per layer.", panel=PANEL)
    nce_t: float = option(0.07, help="PatchNCE temperature.", panel=PANEL)
    netf_nc: int = option(256, help="Width of the projection MLP F.", panel=PANEL)
    nce_all_negatives: bool = option(False, help="Take negatives from every image of the batch, not only the "
                                     "same image.", panel=PANEL)

    def __post_init__(self) -> None:
        parse_layers(self.nce_layers)
        for name in ("num_patches", "netf_nc"):
            if getattr(self, name) < 1:
                raise UsageError(f"{flag(self, name)} must be at least 1")
        if self.nce_t <= 0:
            raise UsageError(f"{flag(self, 'nce_t')} must be positive")
        for name in ("lambda_nce", "lambda_gan"):
            if getattr(self, name) < 0:
                raise UsageError(f"{flag(self, name)} must not be negative")


class GeneratorSide(nn.Module):
    """G and F and everything of one step that takes their gradients (one DDP call): the translation, the
    identity translation (CUT) and the PatchNCE losses."""

    def __init__(self, G: ResnetGenerator, netF: PatchSampleMLP, opt: CUTOptions) -> None:
        super().__init__()
        self.G, self.F, self.opt = G, netF, opt
        self.layers = parse_layers(opt.nce_layers)

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor, flipped: bool) -> dict[str, torch.Tensor]:
        o, n = self.opt, real_A.shape[0]
        real = torch.cat([real_A, real_B]) if o.nce_idt else real_A
        if flipped:
            real = torch.flip(real, [3])
        fake = self.G(real)
        out = {"fake_B": fake[:n]}

        def nce(src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
            return o.lambda_nce * nce_loss(self.G, self.F, src, tgt, self.layers, o.num_patches, o.nce_t, flipped,
                                           o.nce_all_negatives)

        zero = torch.zeros((), device=real_A.device)
        out["NCE"] = nce(real_A, out["fake_B"]) if o.lambda_nce > 0 else zero
        if o.nce_idt:
            out["idt_B"] = fake[n:]
            out["NCE_Y"] = nce(real_B, out["idt_B"]) if o.lambda_nce > 0 else zero
        return out


class CUT(Method):
    name = "cut"
    loss_names = ("G_GAN", "D_real", "D_fake", "NCE", "NCE_Y")
    status_names = ("G_GAN", "D_real", "D_fake", "NCE", "NCE_Y")
    Options = CUTOptions
    drop_last = True        # the CUT reference's training DataLoader drops a short last batch (data/__init__.py)
    defaults = {"n_epochs": 200, "n_epochs_decay": 200, "init_type": "xavier", "gan_mode": "lsgan",
                "generator": {"antialias": True, "antialias_up": True}, "discriminator": {"antialias": True}}
    # builtin:shapes (measured in docs/cut.md "Quality on builtin:shapes"): the preset's generator has 3 ResBlocks
    # (layers 12-14), so tap the first and the last of them where the reference's 9-block generator taps blocks 1
    # and 5; init normal, negatives from the whole batch of 8 (64 patches a layer) and 2000 iterations, for the
    # reasons given at FastCUT's preset below.
    shapes_preset = {"options": {"nce_layers": "0,4,8,12,14", "nce_all_negatives": True, "num_patches": 64},
                     "init_type": "normal", "batch_size": 8, "n_epochs": 8, "n_epochs_decay": 32}

    def __init__(self, config: TrainConfig, ctx: StepContext) -> None:
        super().__init__(config, ctx)
        if not config.generator.arch.startswith("resnet"):
            raise UsageError(f"--model {self.name} needs a resnet generator (its NCE layers index the resnet's "
                             f"layers), not {config.generator.arch}")
        if config.generator.input_nc != config.generator.output_nc:
            raise UsageError(f"--model {self.name} needs as many channels in A as in B (--input-nc "
                             f"{config.generator.input_nc}, --output-nc {config.generator.output_nc}): PatchNCE "
                             "passes the translated image through the generator's encoder again")
        init = dict(init_type=config.init_type, init_gain=config.init_gain)
        self.g_cfg, self.d_cfg = config.generator, config.discriminator
        self.d_cfg = type(self.d_cfg)(**{**self.d_cfg.to_dict(), "input_nc": config.generator.output_nc})
        self.G, self.D = define_G(self.g_cfg, **init), define_D(self.d_cfg, **init)
        self.F = self._build_projection(init)
        self.gen = GeneratorSide(self.G, self.F, self.opt)
        ctx.place(self.gen)
        ctx.place(self.D)
        self.fuse_d = config.discriminator.norm != "batch"
        self.opt_G = make_adam(self.G.parameters(), config, ctx.device)
        self.opt_D = make_adam(self.D.parameters(), config, ctx.device)
        self.opt_F = make_adam(self.F.parameters(), config, ctx.device)
        self.scheds = {k: torch.optim.lr_scheduler.LambdaLR(o, lr_lambda(config))
                       for k, o in (("G", self.opt_G), ("D", self.opt_D), ("F", self.opt_F))}
        self._last: dict[str, torch.Tensor] = {}

    def _build_projection(self, init: dict[str, Any]) -> PatchSampleMLP:
        """F's layer widths are those of G's tapped features: read from one forward of a small blank image (the
        reference builds F at the first batch; the shapes and the initialisation are the same)."""
        probe = torch.zeros(1, self.g_cfg.input_nc, 32, 32)
        with torch.no_grad():
            feats = self.G.encode(probe, parse_layers(self.opt.nce_layers))
        return init_weights(PatchSampleMLP([f.shape[1] for f in feats], self.opt.netf_nc), **init)

    def networks(self) -> dict[str, Saved]:
        return {"G_A": Saved(self.G, GENERATOR_FORMAT, self.g_cfg.to_dict()),
                "D_A": Saved(self.D, DISCRIMINATOR_FORMAT, self.d_cfg.to_dict()),
                "F": Saved(self.F, PROJECTION_FORMAT, self.F.config())}

    def train_state(self) -> dict[str, dict[str, Any]]:
        return dict(optimizers={"G": self.opt_G, "D": self.opt_D, "F": self.opt_F}, schedulers=self.scheds,
                    pools={})

    def preprocess(self, pre: Preprocess, epoch: int) -> Preprocess:
        """In the decay phase the random resize-crop stops (load size := crop size); flips remain."""
        if epoch > self.config.n_epochs:
            import dataclasses

            return dataclasses.replace(pre, load_size=pre.crop_size)
        return pre

    def step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> torch.Tensor:
        c, ctx, o = self.config, self.ctx, self.opt
        flipped = o.flip_equivariance and bool(torch.rand(()) < 0.5)
        out = ctx.forward(self.gen, real_A, real_B, flipped)
        # ---- D: real B vs G(A)
        self.D.requires_grad_(True)
        pred_real, pred_fake = score_real_and_fake(functools.partial(ctx.forward, self.D), real_B,
                                                   out["fake_B"].detach(), self.fuse_d)
        loss_D_real = gan_loss(pred_real, True, c.gan_mode)
        loss_D_fake = gan_loss(pred_fake, False, c.gan_mode)
        ctx.backward(0.5 * (loss_D_real + loss_D_fake), self.opt_D)
        # ---- G and F: GAN + NCE, D frozen
        self.D.requires_grad_(False)
        if o.lambda_gan > 0:
            pred = ctx.forward(self.D, out["fake_B"], ddp=False)
            loss_G_GAN = gan_loss(pred, True, c.gan_mode, for_discriminator=False) * o.lambda_gan
        else:
            loss_G_GAN = torch.zeros((), device=ctx.device)
        loss_NCE_Y = out.get("NCE_Y", torch.zeros((), device=ctx.device))
        loss_nce = (out["NCE"] + loss_NCE_Y) * 0.5 if o.nce_idt else out["NCE"]
        ctx.backward(loss_G_GAN + loss_nce, self.opt_G, self.opt_F)

        unflip = (lambda t: torch.flip(t, [3])) if flipped else (lambda t: t)
        self._last = {"real_A": real_A, "real_B": real_B, "fake_B": unflip(out["fake_B"].detach())}
        if "idt_B" in out:
            self._last["idt_B"] = unflip(out["idt_B"].detach())
        losses = [loss_G_GAN, loss_D_real, loss_D_fake, out["NCE"], loss_NCE_Y][:len(self.loss_names)]
        return torch.stack([v.float() for v in losses]).detach()

    def sample_rows(self) -> list[list[torch.Tensor]]:
        o = self._last
        rows = [[o["real_A"], o["fake_B"]]]
        if "idt_B" in o:
            rows.append([o["real_B"], o["idt_B"]])
        return rows


class FastCUT(CUT):
    name = "fastcut"
    loss_names = ("G_GAN", "D_real", "D_fake", "NCE")
    status_names = loss_names
    defaults = {**CUT.defaults, "n_epochs": 150, "n_epochs_decay": 50,
                "options": {"lambda_nce": 10.0, "nce_idt": False, "flip_equivariance": True}}
    # builtin:shapes (32 px, minutes on a CPU; measured in docs/cut.md "Quality on builtin:shapes"):
    # - init normal: CUT's xavier with gain 0.02 leaves G's weights so small that Adam's first steps swamp them and
    #   G stays a blurred copy of its input for the few thousand iterations a CPU run has;
    # - no flip-equivariance: at 32 px a flipped stride-2 map is off by 1-3 px after flipping back, a third of a
    #   shape's radius, and the NCE pulls G's output by it on half the steps;
    # - negatives from the whole batch of 8 (64 patches a layer, to keep the logits cheap): with same-image
    #   negatives only the shape's colour against white is held, and colours drift (orange -> yellow);
    # - lambda_NCE 4: 10 holds the circles round, 2-3 let colours or shapes drift late in the run;
    # - 2000 iterations (8 + 32 epochs of 50).
    shapes_preset = {**CUT.shapes_preset, "options": {**CUT.shapes_preset["options"], "flip_equivariance": False,
                                                      "lambda_nce": 4.0}}
