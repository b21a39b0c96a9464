"""CycleGAN generators and discriminators, laid out so their ``state_dict`` keys match the reference
implementation (junyanz/pytorch-CycleGAN-and-pix2pix) exactly, plus a small DCGAN-style pair.

Generators (``GeneratorConfig.arch``):

* ``resnet_9blocks`` / ``resnet_6blocks`` -- :class:`ResnetGenerator`; input sides must be multiples of 4.
  ``resnet_<N>blocks`` (any N >= 1, e.g. ``resnet_3blocks``) is the same network with N blocks.
  With ``antialias``/``antialias_up`` (CUT's default) it has CUT's anti-aliased layout: stride-1 convs followed by
  a blur-pool, and fixed upsampling followed by a 3x3 conv; layer indices and keys match the CUT reference.
* ``unet_256`` / ``unet_128`` -- :class:`UnetGenerator` with 8 / 7 downsamplings.
* ``dcgan`` -- :class:`DCGANGenerator`, a 4-level encoder-decoder; sides must be multiples of 16.

Discriminators (``DiscriminatorConfig.arch``):

* ``basic`` -- 70x70 PatchGAN (:class:`NLayerDiscriminator` with 3 layers); ``n_layers`` uses ``cfg.n_layers``.
* ``pixel`` -- :class:`PixelDiscriminator` (1x1 PatchGAN).
* ``dcgan`` -- :class:`DCGANDiscriminator`, needs inputs of at least 64 px; outputs logits (no Sigmoid).

Norms: ``instance`` = ``InstanceNorm2d(affine=False, track_running_stats=False)``, ``batch`` = affine
``BatchNorm2d`` with running stats, ``none`` = ``Identity``. As in the reference, convolutions followed by a norm
have a bias only when the norm is ``instance`` (a quirk: with ``none`` they have no bias either).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from i2i.cyclegan.antialias import Downsample, Upsample
from i2i.cyclegan.config import DiscriminatorConfig, GeneratorConfig, resnet_blocks
from i2i.errors import UsageError
from i2i.options import flag

NormFactory = Callable[[int], nn.Module]

_REQUIRED_MULTIPLE = {"resnet_9blocks": 4, "resnet_6blocks": 4, "unet_256": 256, "unet_128": 128, "dcgan": 16}


# --------------------------------------------------------------------------------------------------- helpers


def get_norm_layer(norm: str) -> NormFactory:
    """A factory ``num_features -> nn.Module`` for ``norm`` ("instance", "batch" or "none")."""
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "none":
        return lambda num_features: nn.Identity()
    raise UsageError(f"norm {norm!r}: choose one of instance, batch, none")


def uses_bias(norm: str) -> bool:
    """The reference's ``use_bias`` rule: convolutions before a norm get a bias only with instance norm."""
    return norm == "instance"


# The smallest side a generator runs on: a ResNet generator's 1/4-scale maps need 2 pixels for their reflection
# padding (every other generator's multiple is larger than this anyway).
MIN_SIDE = 8


def min_train_side(gen: GeneratorConfig, disc: DiscriminatorConfig) -> int:
    """The smallest image side that the generator and the discriminator train on: a PatchGAN with n stride-2
    layers needs 3 * 2**n px (its normalised maps need more than one pixel), a ResNet generator
    :data:`MIN_SIDE`, other generators their multiple."""
    layers = {"basic": 3, "n_layers": disc.n_layers}.get(disc.arch)
    d_side = 3 * 2 ** layers if layers is not None else 1
    return max(d_side, min_generator_side(gen))


def min_generator_side(gen: GeneratorConfig) -> int:
    """The smallest image side the generator runs on (:data:`MIN_SIDE` for a ResNet, else its multiple)."""
    return MIN_SIDE if resnet_blocks(gen.arch) else required_multiple(gen)


def required_multiple(cfg: GeneratorConfig) -> int:
    """The number both input sides must be a multiple of for the generator ``cfg`` (4 for resnet, 256 for
    unet_256, 128 for unet_128, 16 for dcgan)."""
    return 4 if resnet_blocks(cfg.arch) else _REQUIRED_MULTIPLE[cfg.arch]


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Initialise ``net`` in place like the reference and return it.

    Conv, ConvTranspose and Linear weights: ``normal`` N(0, gain), ``xavier`` (xavier_normal, gain),
    ``kaiming`` (kaiming_normal, a=0, fan_in) or ``orthogonal`` (gain); their biases are set to 0.
    BatchNorm weights: N(1, gain), biases 0.
    """
    if init_type not in ("normal", "xavier", "kaiming", "orthogonal"):
        raise UsageError(f"init type {init_type!r}: choose one of normal, xavier, kaiming, orthogonal")

    def init_module(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, init_gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=init_gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=init_gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, init_gain)
            nn.init.zeros_(m.bias)

    with torch.no_grad():
        net.apply(init_module)
    return net


# ------------------------------------------------------------------------------------------------ generators


class ResnetBlock(nn.Module):
    """Residual block ``x + conv_block(x)``; shape-preserving, ``(N, dim, H, W) -> (N, dim, H, W)``.

    ``conv_block`` = [ReflectionPad2d(1), Conv3x3, norm, ReLU, (Dropout 0.5), ReflectionPad2d(1), Conv3x3, norm].
    """

    def __init__(self, dim: int, norm: str, dropout: bool) -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=bias),
            norm_layer(dim),
            nn.ReLU(True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=bias),
            norm_layer(dim),
        ]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """ResNet generator: ``(N, input_nc, H, W) -> (N, output_nc, H, W)`` in [-1, 1]; H, W multiples of 4.

    7x7 conv to ngf -> two stride-2 3x3 convs (2ngf, 4ngf) -> ``n_blocks`` residual blocks at 4ngf -> two
    stride-2 transposed convs (2ngf, ngf) -> 7x7 conv to output_nc -> Tanh. Everything sits in ``self.model``.
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, norm: str = "instance",
                 dropout: bool = False, n_blocks: int = 9, antialias: bool = False,
                 antialias_up: bool = False) -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):  # downsample: ngf -> 2ngf -> 4ngf
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=1 if antialias else 2, padding=1,
                          bias=bias),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
            if antialias:
                layers.append(Downsample(ngf * mult * 2))
        for _ in range(n_blocks):
            layers.append(ResnetBlock(ngf * 4, norm, dropout))
        for i in range(2):  # upsample: 4ngf -> 2ngf -> ngf
            mult = 2 ** (2 - i)
            if antialias_up:
                layers += [Upsample(ngf * mult),
                           nn.Conv2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=1, padding=1, bias=bias)]
            else:
                layers.append(nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1,
                                                 output_padding=1, bias=bias))
            layers += [
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def encode(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """The outputs of the ``self.model`` modules at indices ``layers`` (index 0 = the padded input), in
        order; stops after the last one (CUT's PatchNCE taps)."""
        wanted, feats = set(layers), []
        last = max(wanted)
        if last >= len(self.model):
            raise UsageError(f"NCE layer {last} does not exist: this generator has {len(self.model)} layers")
        for i, module in enumerate(self.model):
            x = module(x)
            if i in wanted:
                feats.append(x)
            if i == last:
                break
        return feats


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: downsample, run ``submodule``, upsample, and concatenate the input (skip).

    Non-outermost: ``(N, outer_nc, H, W) -> (N, 2 * outer_nc, H, W)`` (input concatenated with the result).
    Outermost: ``(N, input_nc, H, W) -> (N, outer_nc, H, W)`` in [-1, 1] (no skip, ends with Tanh).
    Layer order (``self.model`` indices) follows the reference so checkpoint keys match.
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
                 norm: str = "batch", dropout: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        if input_nc is None:
            input_nc = outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        if outermost:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers: list[nn.Module] = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(outer_nc)]
        else:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, norm_layer(inner_nc), submodule, uprelu, upconv, norm_layer(outer_nc)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net generator: ``(N, input_nc, H, W) -> (N, output_nc, H, W)`` in [-1, 1]; H, W multiples of
    ``2**num_downs`` (at 2**num_downs px the bottleneck is 1x1).

    Built from the innermost level outwards: innermost (8ngf), ``num_downs - 5`` levels at 8ngf (with dropout if
    enabled), then 8ngf->4ngf, 4ngf->2ngf, 2ngf->ngf, and the outermost level ngf -> output_nc.
    """

    def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64, norm: str = "batch",
                 dropout: bool = False) -> None:
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, dropout=dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True,
                                             norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DCGANGenerator(nn.Module):
    """DCGAN-style encoder-decoder: ``(N, input_nc, H, W) -> (N, output_nc, H, W)`` in [-1, 1]; H, W multiples
    of 16.

    Encoder: four 4x4 stride-2 convs (ngf, 2ngf, 4ngf, 8ngf) with LeakyReLU 0.2 and a norm on all but the first.
    Decoder: four 4x4 stride-2 transposed convs (4ngf, 2ngf, ngf, output_nc) with norm + ReLU, then Tanh.
    With ``dropout``, Dropout 0.5 follows the first decoder layer (the bottleneck).
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, norm: str = "batch",
                 dropout: bool = False) -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ngf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        for mult in (1, 2, 4):  # ngf -> 2ngf -> 4ngf -> 8ngf
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=4, stride=2, padding=1, bias=bias),
                norm_layer(ngf * mult * 2),
                nn.LeakyReLU(0.2, True),
            ]
        for mult in (8, 4, 2):  # 8ngf -> 4ngf -> 2ngf -> ngf
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=4, stride=2, padding=1, bias=bias),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
            if dropout and mult == 8:
                layers.append(nn.Dropout(0.5))
        layers += [
            nn.ConvTranspose2d(ngf, output_nc, kernel_size=4, stride=2, padding=1),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# -------------------------------------------------------------------------------------------- discriminators


class NLayerDiscriminator(nn.Module):
    """PatchGAN: ``(N, input_nc, H, W) -> (N, 1, H', W')`` logits, one per overlapping patch.

    4x4 convs with padding 1: ndf (stride 2, no norm), then ``n_layers - 1`` stride-2 convs doubling the channels
    (capped at 8ndf), one stride-1 conv, and a stride-1 conv to 1 channel; LeakyReLU 0.2. With 3 layers
    (the 70x70 PatchGAN) a 256x256 input gives 30x30 and 128x128 gives 14x14.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 antialias: bool = False) -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        stride = 1 if antialias else 2
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=4, stride=stride, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        if antialias:
            layers.append(Downsample(ndf))
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=stride, padding=1, bias=bias),
                norm_layer(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
            if antialias:
                layers.append(Downsample(ndf * mult))
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=1, padding=1, bias=bias),
            norm_layer(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN (PixelGAN): ``(N, input_nc, H, W) -> (N, 1, H, W)`` logits, one per pixel."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "instance") -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=bias),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator without the final Sigmoid: ``(N, input_nc, H, W) -> (N, 1, H/16 - 3, W/16 - 3)``
    logits; H, W >= 64 (64x64 gives 1x1).

    Four 4x4 stride-2 convs (ndf, 2ndf, 4ndf, 8ndf; norm on all but the first; LeakyReLU 0.2), then a 4x4
    stride-1 unpadded conv to 1 channel.
    """

    MIN_SIZE = 64

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        for mult in (1, 2, 4):
            layers += [
                nn.Conv2d(ndf * mult, ndf * mult * 2, kernel_size=4, stride=2, padding=1, bias=bias),
                norm_layer(ndf * mult * 2),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * 8, 1, kernel_size=4, stride=1, padding=0))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] < self.MIN_SIZE or x.shape[-1] < self.MIN_SIZE:
            raise UsageError(f"the dcgan discriminator needs images of at least {self.MIN_SIZE}x{self.MIN_SIZE} "
                             f"px (got {x.shape[-2]}x{x.shape[-1]}); use a larger --crop-size")
        return self.model(x)


# --------------------------------------------------------------------------------------------------- factories


def define_G(cfg: GeneratorConfig, *, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Build and initialise the generator described by ``cfg``:
    ``(N, cfg.input_nc, H, W) -> (N, cfg.output_nc, H, W)``, H and W multiples of :func:`required_multiple`."""
    n_blocks = resnet_blocks(cfg.arch)
    if n_blocks:
        net: nn.Module = ResnetGenerator(cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.norm, cfg.dropout, n_blocks,
                                         cfg.antialias, cfg.antialias_up)
    elif cfg.arch in ("unet_256", "unet_128"):
        num_downs = 8 if cfg.arch == "unet_256" else 7
        net = UnetGenerator(cfg.input_nc, cfg.output_nc, num_downs, cfg.ngf, cfg.norm, cfg.dropout)
    elif cfg.arch == "dcgan":
        net = DCGANGenerator(cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.norm, cfg.dropout)
    else:
        raise UsageError(f"generator architecture {cfg.arch!r} is not implemented")
    return init_weights(net, init_type, init_gain)


def define_D(cfg: DiscriminatorConfig, *, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Build and initialise the discriminator described by ``cfg``: ``(N, cfg.input_nc, H, W) -> (N, 1, H', W')``
    logits."""
    if cfg.arch == "basic":
        net: nn.Module = NLayerDiscriminator(cfg.input_nc, cfg.ndf, 3, cfg.norm, cfg.antialias)
    elif cfg.arch == "n_layers":
        if cfg.n_layers < 1:
            raise UsageError(f"{flag(cfg, 'n_layers')} must be at least 1 (got {cfg.n_layers})")
        net = NLayerDiscriminator(cfg.input_nc, cfg.ndf, cfg.n_layers, cfg.norm, cfg.antialias)
    elif cfg.arch == "pixel":
        net = PixelDiscriminator(cfg.input_nc, cfg.ndf, cfg.norm)
    elif cfg.arch == "dcgan":
        net = DCGANDiscriminator(cfg.input_nc, cfg.ndf, cfg.norm)
    else:
        raise UsageError(f"discriminator architecture {cfg.arch!r} is not implemented")
    return init_weights(net, init_type, init_gain)
