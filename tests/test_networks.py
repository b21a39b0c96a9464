"""CycleGAN networks: reference parameter counts, state_dict layout, output shapes, init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from i2i.cyclegan.config import DiscriminatorConfig, GeneratorConfig
from i2i.cyclegan.networks import define_D, define_G, init_weights, required_multiple
from i2i.errors import UsageError


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (GeneratorConfig(arch="resnet_9blocks", ngf=64, norm="instance", dropout=False), 11_378_179),
        (GeneratorConfig(arch="resnet_6blocks", ngf=64, norm="instance", dropout=False), 7_837_699),
        (GeneratorConfig(arch="unet_256", ngf=64, norm="batch", dropout=True), 54_413_955),
    ],
    ids=["resnet_9blocks", "resnet_6blocks", "unet_256"],
)
def test_generator_parameter_counts_match_reference(cfg: GeneratorConfig, expected: int) -> None:
    assert n_params(define_G(cfg)) == expected


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (DiscriminatorConfig(arch="basic", ndf=64, norm="instance"), 2_764_737),
        (DiscriminatorConfig(arch="n_layers", ndf=64, n_layers=3, norm="instance"), 2_764_737),
        (DiscriminatorConfig(arch="pixel", ndf=64, norm="instance"), 8_705),
        # with batch norm the pixel D's convs lose their bias and gain BatchNorm weight/bias: 8,832
        (DiscriminatorConfig(arch="pixel", ndf=64, norm="batch"), 8_832),
    ],
    ids=["basic", "n_layers3", "pixel_instance", "pixel_batch"],
)
def test_discriminator_parameter_counts_match_reference(cfg: DiscriminatorConfig, expected: int) -> None:
    assert n_params(define_D(cfg)) == expected


def test_resnet_9blocks_state_dict_keys_match_reference() -> None:
    keys = list(define_G(GeneratorConfig()).state_dict())
    expected = ["model.1.weight", "model.1.bias", "model.4.weight", "model.4.bias", "model.7.weight",
                "model.7.bias"]
    for block in range(10, 19):
        for conv in (1, 5):
            expected += [f"model.{block}.conv_block.{conv}.weight", f"model.{block}.conv_block.{conv}.bias"]
    expected += ["model.19.weight", "model.19.bias", "model.22.weight", "model.22.bias", "model.26.weight",
                 "model.26.bias"]
    assert len(keys) == 48
    assert keys == expected


def test_dropout_shifts_resnet_block_indices() -> None:
    keys = define_G(GeneratorConfig(arch="resnet_6blocks", ngf=8, dropout=True)).state_dict()
    assert "model.10.conv_block.6.weight" in keys and "model.10.conv_block.5.weight" not in keys


def test_unet_keys_are_nested_like_reference() -> None:
    keys = list(define_G(GeneratorConfig(arch="unet_128", ngf=8, norm="batch")).state_dict())
    # no bias on the outermost down conv: with batch norm the reference's use_bias is False everywhere
    assert keys[:3] == ["model.model.0.weight", "model.model.1.model.1.weight", "model.model.1.model.2.weight"]
    assert "model.model.1.model.2.running_mean" in keys  # BatchNorm after the second level's down conv
    assert "model.model.3.weight" in keys  # outermost transposed conv
    assert max(k.split(".").count("model") for k in keys) == 8  # 7 levels


def test_norm_bias_rule() -> None:
    inst = define_G(GeneratorConfig(arch="resnet_6blocks", ngf=8, norm="instance")).state_dict()
    batch = define_G(GeneratorConfig(arch="resnet_6blocks", ngf=8, norm="batch")).state_dict()
    none = define_G(GeneratorConfig(arch="resnet_6blocks", ngf=8, norm="none")).state_dict()
    assert "model.1.bias" in inst and not any("running" in k for k in inst)
    assert "model.1.bias" not in batch and "model.2.running_mean" in batch and "model.2.weight" in batch
    assert "model.1.bias" not in none and "model.2.weight" not in none
    assert "model.23.bias" in inst and "model.23.bias" in batch and "model.23.bias" in none  # final conv


@pytest.mark.parametrize("arch", ["resnet_9blocks", "resnet_6blocks"])
def test_resnet_output_shape_non_square(arch: str) -> None:
    g = define_G(GeneratorConfig(arch=arch, ngf=8)).eval()
    with torch.no_grad():
        y = g(torch.randn(2, 3, 96, 128))
    assert y.shape == (2, 3, 96, 128)
    assert y.abs().max() <= 1.0


@pytest.mark.parametrize(("arch", "side"), [("unet_128", 128), ("unet_256", 256)])
def test_unet_output_shape(arch: str, side: int) -> None:
    g = define_G(GeneratorConfig(arch=arch, ngf=4, norm="batch", dropout=True)).eval()
    with torch.no_grad():
        assert g(torch.randn(1, 3, side, side)).shape == (1, 3, side, side)


def test_grayscale_channels() -> None:
    g = define_G(GeneratorConfig(arch="resnet_6blocks", ngf=8, input_nc=1, output_nc=3)).eval()
    with torch.no_grad():
        assert g(torch.randn(1, 1, 32, 32)).shape == (1, 3, 32, 32)


def test_dcgan_generator_shapes() -> None:
    g = define_G(GeneratorConfig(arch="dcgan", ngf=8, norm="batch")).eval()
    with torch.no_grad():
        assert g(torch.randn(2, 3, 64, 64)).shape == (2, 3, 64, 64)
        assert g(torch.randn(1, 3, 48, 80)).shape == (1, 3, 48, 80)


def test_dcgan_discriminator_shapes() -> None:
    d = define_D(DiscriminatorConfig(arch="dcgan", ndf=8, norm="batch")).eval()
    with torch.no_grad():
        assert d(torch.randn(2, 3, 64, 64)).shape == (2, 1, 1, 1)
        assert d(torch.randn(1, 3, 128, 128)).shape == (1, 1, 5, 5)
        with pytest.raises(UsageError, match="at least 64"):
            d(torch.randn(1, 3, 32, 32))
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())


@pytest.mark.parametrize(("side", "out"), [(128, 14), (256, 30)])
def test_patchgan_output_size(side: int, out: int) -> None:
    d = define_D(DiscriminatorConfig(arch="basic", ndf=8)).eval()
    with torch.no_grad():
        assert d(torch.randn(1, 3, side, side)).shape == (1, 1, out, out)


def test_n_layers_and_pixel_discriminators() -> None:
    d = define_D(DiscriminatorConfig(arch="n_layers", ndf=8, n_layers=2)).eval()
    p = define_D(DiscriminatorConfig(arch="pixel", ndf=8)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert d(x).shape == (1, 1, 14, 14)
        assert p(x).shape == (1, 1, 64, 64)


def test_required_multiple() -> None:
    assert required_multiple(GeneratorConfig(arch="resnet_9blocks")) == 4
    assert required_multiple(GeneratorConfig(arch="resnet_6blocks")) == 4
    assert required_multiple(GeneratorConfig(arch="unet_256")) == 256
    assert required_multiple(GeneratorConfig(arch="unet_128")) == 128
    assert required_multiple(GeneratorConfig(arch="dcgan")) == 16


def _conv_weights(net: nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])


def test_init_normal_gain_and_zero_bias() -> None:
    torch.manual_seed(0)
    g = define_G(GeneratorConfig(arch="resnet_6blocks", ngf=16))
    w = _conv_weights(g)
    assert abs(w.std().item() - 0.02) < 1e-3
    assert abs(w.mean().item()) < 1e-3
    assert all(m.bias is None or not m.bias.any() for m in g.modules() if isinstance(m, nn.Conv2d))
    g2 = define_G(GeneratorConfig(arch="resnet_6blocks", ngf=16), init_gain=0.05)
    assert abs(_conv_weights(g2).std().item() - 0.05) < 2e-3


def test_init_batchnorm() -> None:
    torch.manual_seed(0)
    d = define_D(DiscriminatorConfig(arch="basic", ndf=64, norm="batch"))
    bn = torch.cat([m.weight for m in d.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1.0) < 5e-3 and abs(bn.std().item() - 0.02) < 5e-3


@pytest.mark.parametrize("init_type", ["xavier", "kaiming", "orthogonal"])
def test_other_init_types_run(init_type: str) -> None:
    g = define_G(GeneratorConfig(arch="resnet_6blocks", ngf=8), init_type=init_type)
    assert torch.isfinite(_conv_weights(g)).all()


def test_init_weights_rejects_unknown_type() -> None:
    with pytest.raises(UsageError):
        init_weights(nn.Conv2d(1, 1, 1), "uniform")


def test_resnet_with_any_number_of_blocks():
    from i2i.cyclegan.config import GeneratorConfig, resnet_blocks
    from i2i.cyclegan.networks import ResnetGenerator, define_G, required_multiple
    from i2i.errors import UsageError

    assert [resnet_blocks(a) for a in ("resnet_9blocks", "resnet_3blocks", "resnet_12blocks", "unet_128")] == \
        [9, 3, 12, None]
    three, six = (GeneratorConfig(arch=f"resnet_{n}blocks", ngf=8) for n in (3, 6))
    g3, g6 = define_G(three), define_G(six)
    assert isinstance(g3, ResnetGenerator) and required_multiple(three) == 4
    per_block = (sum(p.numel() for p in g6.parameters()) - sum(p.numel() for p in g3.parameters())) / 3
    assert per_block == 2 * (32 * 32 * 9 + 32)          # two 3x3 convs at 4 * ngf (with bias: instance norm)
    for bad in ("resnet_0blocks", "resnet_blocks", "resnet_3"):
        with pytest.raises(UsageError, match="resnet_<N>blocks"):
            GeneratorConfig(arch=bad)
