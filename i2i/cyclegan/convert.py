"""Read generator checkpoints of the reference implementation (``latest_net_G_A.pth`` etc.) safely.

A reference ``.pth`` file is one pickled ``state_dict``. It is read with ``torch.load(weights_only=True)``, so a
file that would run code while unpickling is refused instead of executed. Wrapper prefixes (``module.`` from
DDP, ``_orig_mod.`` from torch.compile) are stripped, and the running-stat buffers that old PyTorch versions
stored for InstanceNorm layers are dropped, as the reference does when it loads such files.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING

from i2i.cyclegan.config import GeneratorConfig
from i2i.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def _drop_instance_norm_stats(state: dict[str, "torch.Tensor"], norm: str | None) -> dict[str, "torch.Tensor"]:
    """Remove legacy InstanceNorm running stats.

    ``norm="instance"``: every running-stat key goes (the target has no norm buffers at all).
    ``norm=None``: only those of layers without an affine ``weight`` go -- the reference's BatchNorm is always
    affine, so a norm layer with running stats but no weight is a legacy InstanceNorm.
    ``"batch"`` / ``"none"``: nothing is removed.
    """
    if norm not in (None, "instance"):
        return state
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if leaf in _RUNNING_STATS and (norm == "instance" or f"{module}.weight" not in state):
            continue
        out[key] = value
    return out


def load_reference_state(path: str | os.PathLike, norm: str | None = None) -> dict[str, "torch.Tensor"]:
    """Load a reference ``.pth`` state_dict safely: ``{key: tensor}`` on the CPU.

    ``norm`` is the target network's norm if known (see :func:`_drop_instance_norm_stats`). Raises
    :class:`CheckpointError` for a missing or unreadable file, a file that contains executable pickle code
    (refused, never run), or content that is not a plain ``{str: Tensor}`` state_dict.
    """
    import torch

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder; give the reference's generator file (e.g. latest_net_G_A.pth)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The weights-only unpickler names the callable it refused to import ("GLOBAL posix.system").
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:
            raise CheckpointError(
                f"{path}: refused: the file contains executable pickle code ({found.group(1)}); only plain "
                "state_dicts (tensors) are accepted") from exc
        operand = re.search(r"Unsupported operand \d+", str(exc))
        reason = operand.group(0) if operand else "unsupported pickle content"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (the safe weights-only loader "
                              f"rejected it: {reason})") from exc
    except Exception as exc:  # torch raises RuntimeError, KeyError, EOFError, ... for corrupt files
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no details'})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state_dict (a dict of tensors), found {type(obj).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: expected a state_dict of tensors, but entry {key!r} is a "
                                  f"{type(value).__name__}")
        state[_strip_prefixes(key)] = value
    if not state:
        raise CheckpointError(f"{path}: the state_dict is empty")
    broken = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if broken is not None:
        raise CheckpointError(f"{path}: {broken} holds NaN or inf values; these weights would only make blank "
                              "images")
    if len(state) != len(obj):
        raise CheckpointError(f"{path}: keys collide after removing module./_orig_mod. prefixes")
    return _drop_instance_norm_stats(state, norm)


def generator_from_reference(path: str | os.PathLike, cfg: GeneratorConfig) -> "nn.Module":
    """Build ``define_G(cfg)`` and load the reference checkpoint at ``path`` into it strictly (eval mode).

    A checkpoint that does not fit ``cfg`` (other arch, ngf, norm, or dropout, which shifts layer indices)
    raises :class:`CheckpointError`.
    """
    import torch

    from i2i.cyclegan.checkpoint import load_state_strict
    from i2i.cyclegan.networks import define_G

    state = load_reference_state(path, norm=cfg.norm)
    if cfg.norm == "batch":  # checkpoints from PyTorch < 0.4.1 lack this BatchNorm buffer
        for key in [k for k in state if k.endswith(".running_mean")]:
            state.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
    net = define_G(cfg)
    _check_fixed_filters(net, state, str(path))
    load_state_strict(net, state, str(path))
    return net.eval()


def _check_fixed_filters(net: "nn.Module", state: dict[str, "torch.Tensor"], source: str) -> None:
    """The anti-aliasing ``filt`` buffers are constants: a file whose filters differ is not this architecture."""
    import torch

    own = {k: v for k, v in net.state_dict().items() if k.endswith(".filt")}
    for key, value in own.items():
        if key in state and state[key].shape == value.shape \
                and not torch.allclose(state[key].float(), value.float(), atol=1e-6):
            raise CheckpointError(f"{source}: {key} is not the fixed anti-aliasing filter; this file does not "
                                  "come from the CUT reference architecture")


def import_reference(path: str | os.PathLike, out_path: str | os.PathLike, cfg: GeneratorConfig,
                     overwrite: bool = False) -> Path:
    """Convert a reference generator ``.pth`` into the project's self-describing generator file (safetensors,
    written atomically). An existing ``out_path`` raises :class:`~i2i.errors.OutputError` unless ``overwrite``."""
    from i2i.cyclegan.checkpoint import save_generator

    if Path(out_path).suffix != ".safetensors":
        raise UsageError(f"--out {out_path}: the converted file is safetensors; name it *.safetensors")
    net = generator_from_reference(path, cfg)
    return save_generator(out_path, net, cfg, overwrite=overwrite)


# ------------------------------------------------------------------------------------- architecture guessing

_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.weight$")


def _guess_resnet(state: dict[str, "torch.Tensor"]) -> GeneratorConfig | None:
    """The reference CycleGAN layout (blocks from index 10) or CUT's anti-aliased one (a blur-pool ``filt`` at
    index 7, blocks from 12; with fixed upsampling, a ``filt`` right after the blocks)."""
    blocks: dict[int, set[int]] = {}
    for key in state:
        m = _BLOCK_KEY.match(key)
        if m and state[key].dim() == 4:  # convolutions only, not BatchNorm weights
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    n_blocks = len(blocks)
    arch = f"resnet_{n_blocks}blocks" if n_blocks else None
    antialias = "model.7.filt" in state
    start = 12 if antialias else 10
    if arch is None or sorted(blocks) != list(range(start, start + n_blocks)):
        return None
    antialias_up = f"model.{start + n_blocks}.filt" in state
    conv_indices = set.union(*blocks.values())
    if conv_indices == {1, 5}:
        dropout = False
    elif conv_indices == {1, 6}:
        dropout = True
    else:
        return None
    last_index = start + n_blocks + (9 if antialias_up else 7)
    first, last = state.get("model.1.weight"), state.get(f"model.{last_index}.weight")
    if first is None or last is None or first.dim() != 4 or last.dim() != 4 or tuple(first.shape[2:]) != (7, 7):
        return None
    ngf, input_nc, output_nc = first.shape[0], first.shape[1], last.shape[0]
    if last.shape[1] != ngf:
        return None
    if "model.1.bias" in state:
        norm = "instance"
    elif "model.2.weight" in state or "model.2.running_mean" in state:
        norm = "batch"
    else:
        norm = "none"
    return _make_config(arch, input_nc, output_nc, ngf, norm, dropout, antialias, antialias_up)


def _guess_unet(state: dict[str, "torch.Tensor"]) -> GeneratorConfig | None:
    # The outermost level's layers are model.model.<i>; each deeper level adds one ".model.1" / ".model.3".
    num_downs = max(key.split(".").count("model") for key in state) - 1
    arch = {8: "unet_256", 7: "unet_128"}.get(num_downs)
    first, last = state.get("model.model.0.weight"), state.get("model.model.3.weight")
    if arch is None or first is None or last is None or first.dim() != 4 or last.dim() != 4:
        return None
    ngf, input_nc, output_nc = first.shape[0], first.shape[1], last.shape[1]  # ConvTranspose: (in, out, k, k)
    if last.shape[0] != 2 * ngf:
        return None
    if "model.model.1.model.1.bias" in state:
        norm = "instance"
    elif "model.model.1.model.2.weight" in state or "model.model.1.model.2.running_mean" in state:
        norm = "batch"
    else:
        norm = "none"
    # U-Net dropout sits after the last layer of a level, so it leaves no trace in the keys; in eval mode it
    # changes nothing, so the weights load and translate the same either way.
    return _make_config(arch, input_nc, output_nc, ngf, norm, False)


def _make_config(arch: str, input_nc: int, output_nc: int, ngf: int, norm: str,
                 dropout: bool, antialias: bool = False, antialias_up: bool = False) -> GeneratorConfig | None:
    try:
        return GeneratorConfig(arch=arch, input_nc=int(input_nc), output_nc=int(output_nc), ngf=int(ngf),
                               norm=norm, dropout=dropout, antialias=antialias, antialias_up=antialias_up)
    except UsageError:
        return None


def guess_generator_config(state: dict[str, "torch.Tensor"]) -> GeneratorConfig | None:
    """Infer the reference generator architecture from a state_dict (as returned by
    :func:`load_reference_state`), or None if it is not a standard resnet/unet generator.

    Read from the keys and shapes: arch (number of residual blocks / U-Net depth), ngf and input channels (first
    conv), output channels (last conv), norm (conv bias => instance, BatchNorm weights/stats => batch, else
    none) and, for resnets, dropout (it shifts the second conv of each block from index 5 to 6) and CUT's
    anti-aliased layout (``filt`` buffers of its blur-pool and upsampling layers). U-Net dropout
    cannot be seen in the weights and is reported as False.
    """
    if not state:
        return None
    if any(key.startswith("model.model.") for key in state):
        return _guess_unet(state)
    if any(_BLOCK_KEY.match(key) for key in state):  # a resnet
        return _guess_resnet(state)
    return None


def load_any_generator(checkpoint: str | os.PathLike, direction: str = "AtoB", device: "torch.device | str" = "cpu",
                       best: bool = False, **arch: object) -> tuple["nn.Module", GeneratorConfig]:
    """``(generator, config)`` from whatever ``translate`` and ``export`` take as ``-c``: a run or checkpoint folder
    (``best``: the run's best checkpoint; ``direction`` picks G_A or G_B), a generator file, or a reference
    ``.pth``, whose architecture is guessed from its weights and completed or overridden by ``arch``
    (:class:`GeneratorConfig` fields: ``arch="unet_256"``, ``ngf=32``, ...). ``arch`` with a self-describing
    file is a :class:`UsageError`."""
    from i2i.cyclegan.checkpoint import load_generator, resolve_generator_file

    path = resolve_generator_file(checkpoint, direction, best)
    if path.suffix in (".pth", ".pt"):
        guessed = guess_generator_config(load_reference_state(path))
        cfg = GeneratorConfig(**{**(guessed.to_dict() if guessed else {}), **arch})
        try:
            return generator_from_reference(path, cfg).to(device).eval(), cfg
        except CheckpointError as exc:
            if guessed is None or guessed == cfg:
                raise
            given = ", ".join(f"{k}={v}" for k, v in arch.items())
            looks = ", ".join(f"{k}={v}" for k, v in guessed.to_dict().items() if k in arch or k in ("arch", "ngf"))
            raise CheckpointError(f"{exc}\n{path.name} looks like {looks} by its weights, not {given}: drop the "
                                  "architecture flags to use that") from exc
    if arch:
        raise UsageError("architecture flags (--net-g, --ngf, ...) are only for reference .pth files; "
                         f"{path.name} describes its own architecture")
    return load_generator(path, device)
