"""Reading reference .pth generators: safe loading, prefix/legacy handling, strict loading, import, guessing."""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import pytest
import torch

from i2i.cyclegan.checkpoint import load_generator
from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.convert import (
    generator_from_reference,
    guess_generator_config,
    import_reference,
    load_reference_state,
)
from i2i.cyclegan.networks import define_G
from i2i.errors import CheckpointError, OutputError, UsageError

SMALL = GeneratorConfig(arch="resnet_6blocks", ngf=8)


def _reference_file(path: Path, cfg: GeneratorConfig, legacy_instance_stats: bool = False,
                    prefix: str = "") -> torch.nn.Module:
    """Save a reference-style checkpoint (a plain state_dict) of a freshly initialised generator."""
    torch.manual_seed(1)
    net = define_G(cfg).eval()
    state = dict(net.state_dict())
    if legacy_instance_stats:  # what PyTorch < 0.4 stored for InstanceNorm2d layers
        for key in ["model.2", "model.5", "model.10.conv_block.2", "model.10.conv_block.6"]:
            state[f"{key}.running_mean"] = torch.zeros(4)
            state[f"{key}.running_var"] = torch.ones(4)
            state[f"{key}.num_batches_tracked"] = torch.tensor(0)
    torch.save({prefix + k: v for k, v in state.items()}, path)
    return net


def _same_output(a: torch.nn.Module, b: torch.nn.Module, cfg: GeneratorConfig, side: int = 32) -> bool:
    x = torch.randn(1, cfg.input_nc, side, side)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_legacy_instance_norm_keys_are_dropped_and_outputs_match(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G_A.pth"
    ref = _reference_file(path, SMALL, legacy_instance_stats=True)
    assert any(k.endswith("running_mean") for k in torch.load(path, weights_only=True))
    state = load_reference_state(path)
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in state)
    net = generator_from_reference(path, SMALL)
    assert _same_output(ref, net, SMALL)


def test_batchnorm_stats_are_kept(tmp_path: Path) -> None:
    cfg = GeneratorConfig(arch="resnet_6blocks", ngf=8, norm="batch")
    path = tmp_path / "g.pth"
    ref = _reference_file(path, cfg)
    assert "model.2.running_mean" in load_reference_state(path)
    assert _same_output(ref, generator_from_reference(path, cfg), cfg)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(tmp_path: Path, prefix: str) -> None:
    path = tmp_path / "g.pth"
    ref = _reference_file(path, SMALL, prefix=prefix)
    state = load_reference_state(path)
    assert all(not k.startswith(("module.", "_orig_mod.")) for k in state)
    assert _same_output(ref, generator_from_reference(path, SMALL), SMALL)


class _Payload:
    """Unpickling this runs a shell command that creates a file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {shlex.quote(str(self.target))}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    # The payload really works under plain pickle ...
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Payload(proof)))
    assert proof.exists()
    # ... but a .pth carrying it is refused and never executed.
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model.1.weight": torch.zeros(1), "x": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="executable pickle code") as err:
        load_reference_state(path)
    assert str(path) in str(err.value)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        generator_from_reference(path, SMALL)
    assert not marker.exists()


def test_non_state_dict_contents_are_refused(tmp_path: Path) -> None:
    lst = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], lst)
    with pytest.raises(CheckpointError, match="state_dict"):
        load_reference_state(lst)
    mixed = tmp_path / "mixed.pth"
    torch.save({"model.1.weight": torch.zeros(1), "epoch": 3}, mixed)
    with pytest.raises(CheckpointError, match="epoch"):
        load_reference_state(mixed)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_reference_state(garbage)
    with pytest.raises(CheckpointError, match="no such"):
        load_reference_state(tmp_path / "missing.pth")


@pytest.mark.parametrize(
    "wrong",
    [
        GeneratorConfig(arch="resnet_6blocks", ngf=8, dropout=True),  # dropout shifts conv_block indices
        GeneratorConfig(arch="resnet_9blocks", ngf=8),
        GeneratorConfig(arch="resnet_6blocks", ngf=16),
        GeneratorConfig(arch="resnet_6blocks", ngf=8, norm="batch"),
    ],
    ids=["dropout", "blocks", "ngf", "norm"],
)
def test_architecture_mismatch_is_a_checkpoint_error(tmp_path: Path, wrong: GeneratorConfig) -> None:
    path = tmp_path / "g.pth"
    _reference_file(path, SMALL)
    with pytest.raises(CheckpointError, match="do not fit"):
        generator_from_reference(path, wrong)


def test_import_writes_a_generator_file(tmp_path: Path) -> None:
    src, out = tmp_path / "latest_net_G_A.pth", tmp_path / "out" / "G.safetensors"
    ref = _reference_file(src, SMALL, legacy_instance_stats=True)
    assert import_reference(src, out, SMALL) == out
    net, cfg = load_generator(out)
    assert cfg == SMALL
    assert _same_output(ref, net, SMALL)
    with pytest.raises(OutputError):
        import_reference(src, out, SMALL)
    import_reference(src, out, SMALL, overwrite=True)
    assert [p.name for p in out.parent.iterdir()] == ["G.safetensors"]  # no temp files left
    with pytest.raises(UsageError, match="name it \\*.safetensors"):
        import_reference(src, tmp_path / "G.pth", SMALL)                  # safetensors under a .pth name
    with pytest.raises(CheckpointError, match="a folder"):
        load_reference_state(tmp_path)


def test_weights_with_nan_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "latest_net_G_A.pth"
    _reference_file(src, SMALL)
    state = torch.load(src, weights_only=True)
    state["model.1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, src)
    with pytest.raises(CheckpointError, match="model.1.weight holds NaN or inf"):
        load_reference_state(src)


@pytest.mark.parametrize(
    "cfg",
    [
        GeneratorConfig(arch="resnet_9blocks", ngf=8),
        GeneratorConfig(arch="resnet_6blocks", ngf=8),
        GeneratorConfig(arch="resnet_6blocks", ngf=16, norm="batch", dropout=True, input_nc=1),
        GeneratorConfig(arch="resnet_9blocks", ngf=8, norm="none", output_nc=1),
        GeneratorConfig(arch="unet_128", ngf=8, norm="instance"),
        GeneratorConfig(arch="unet_128", ngf=8, norm="batch"),
        GeneratorConfig(arch="unet_256", ngf=4, norm="batch"),
    ],
    ids=["resnet9", "resnet6", "resnet6_batch_dropout_gray", "resnet9_none", "unet128", "unet128_batch",
         "unet256_batch"],
)
def test_guess_generator_config(cfg: GeneratorConfig) -> None:
    assert guess_generator_config(define_G(cfg).state_dict()) == cfg


def test_guess_after_loading_legacy_file(tmp_path: Path) -> None:
    path = tmp_path / "g.pth"
    _reference_file(path, SMALL, legacy_instance_stats=True, prefix="module.")
    assert guess_generator_config(load_reference_state(path)) == SMALL


def test_guess_returns_none_when_unsure() -> None:
    assert guess_generator_config({}) is None
    assert guess_generator_config({"fc.weight": torch.zeros(2, 2)}) is None
    state = define_G(GeneratorConfig(arch="resnet_6blocks", ngf=8)).state_dict()
    del state["model.12.conv_block.1.weight"], state["model.12.conv_block.5.weight"]  # a 5-block resnet
    assert guess_generator_config(state) is None


def test_load_any_generator_takes_what_the_commands_take(tmp_path: Path) -> None:
    from i2i.cyclegan.checkpoint import save_generator
    from i2i.cyclegan.convert import load_any_generator

    ref = _reference_file(tmp_path / "latest_net_G_A.pth", SMALL)
    net, cfg = load_any_generator(tmp_path / "latest_net_G_A.pth")            # architecture guessed
    assert cfg.arch == "resnet_6blocks" and cfg.ngf == 8 and _same_output(ref, net, SMALL)
    net, cfg = load_any_generator(str(tmp_path / "latest_net_G_A.pth"), arch="resnet_6blocks", ngf=8)
    assert _same_output(ref, net, SMALL)
    save_generator(tmp_path / "G_A.safetensors", ref, SMALL)
    net, cfg = load_any_generator(tmp_path / "G_A.safetensors")
    assert cfg == SMALL and _same_output(ref, net, SMALL)
    with pytest.raises(UsageError, match="only for reference .pth files"):
        load_any_generator(tmp_path / "G_A.safetensors", ngf=16)


def test_btoa_with_a_single_generator_file_is_refused_unless_it_is_a_b_to_a_one(tmp_path: Path) -> None:
    from i2i.cyclegan.checkpoint import resolve_generator_file

    for name in ("G_A.safetensors", "latest_net_G_A.pth", "zebra.safetensors", "G_B.safetensors",
                 "latest_net_G_B.pth"):
        (tmp_path / name).write_bytes(b"x")
        if "G_B" in name:
            assert resolve_generator_file(tmp_path / name, "BtoA") == tmp_path / name
        else:
            with pytest.raises(UsageError, match="a file is one generator"):
                resolve_generator_file(tmp_path / name, "BtoA")
            assert resolve_generator_file(tmp_path / name, "AtoB") == tmp_path / name


def test_a_reference_checkpoint_folder_is_taken_as_its_test_script_takes_it(tmp_path: Path) -> None:
    """-c checkpoints/NAME/ of the reference code: latest_net_G_A / G_B by direction (its --epoch latest),
    CUT's latest_net_G for A -> B; a folder with only numbered epochs names them."""
    from i2i.cyclegan.checkpoint import resolve_generator_file
    from i2i.cyclegan.convert import load_any_generator

    cyc = tmp_path / "horse2zebra"
    cyc.mkdir()
    for name in ("latest_net_G_A.pth", "latest_net_G_B.pth", "latest_net_D_A.pth", "5_net_G_A.pth"):
        (cyc / name).write_bytes(b"x")
    assert resolve_generator_file(cyc, "AtoB") == cyc / "latest_net_G_A.pth"
    assert resolve_generator_file(cyc, "BtoA") == cyc / "latest_net_G_B.pth"
    cut = tmp_path / "cut"
    cut.mkdir()
    ref = _reference_file(cut / "latest_net_G.pth", SMALL)
    (cut / "latest_net_F.pth").write_bytes(b"x")
    net, cfg = load_any_generator(cut)
    assert cfg.arch == "resnet_6blocks" and _same_output(ref, net, SMALL)
    with pytest.raises(UsageError, match="one generator .* drop --direction"):
        resolve_generator_file(cut, "BtoA")
    epochs = tmp_path / "epochs"
    epochs.mkdir()
    (epochs / "5_net_G_A.pth").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="5_net_G_A.pth"):
        resolve_generator_file(epochs, "AtoB")
    with pytest.raises(CheckpointError, match="no G_A.safetensors"):
        resolve_generator_file(tmp_path / "horse2zebra" / "..", "AtoB")   # nothing of either kind directly here


def test_wrong_architecture_flags_name_what_the_weights_look_like(tmp_path: Path) -> None:
    from i2i.cyclegan.convert import load_any_generator

    _reference_file(tmp_path / "latest_net_G_A.pth", SMALL)
    with pytest.raises(CheckpointError, match=r"looks like arch=resnet_6blocks, ngf=8 .*not arch=resnet_9blocks"):
        load_any_generator(tmp_path / "latest_net_G_A.pth", arch="resnet_9blocks")
