"""CycleGAN checkpoint format: safetensors weights with their config in the metadata, run folders, and atomic,
crash-safe checkpoint directories.

A **run folder** looks like this::

    RUN/
      config.json                    the TrainConfig of the run
      latest                         text: the newest complete checkpoint, e.g. "checkpoints/iter_00001200"
      checkpoints/iter_00001200/     one complete checkpoint (written to a temp dir, fsynced, renamed)
          G_A.safetensors G_B.safetensors D_A.safetensors D_B.safetensors
          train_state.safetensors    optimizer moments, image pools, RNG states (tensors)
          train_state.json           epoch, iteration, schedulers, param groups, Python RNG (no pickle)
      checkpoints/best/              with --eval-every: the weights with the lowest KID so far (no train state),
          info.json                  its iteration, KID and how it was measured
      samples/iter_00000400.png      real / fake / reconstructed grids
      log.jsonl                      one JSON line of losses per logged iteration

A **generator file** (``G_A.safetensors``, or the output of ``i2i cyclegan import``) is self-describing: its
safetensors metadata holds ``{"format": "i2i.cyclegan.generator", "version": "1", "config": <GeneratorConfig>}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from i2i.cyclegan.config import DEFAULT_MODEL, GeneratorConfig
from i2i.errors import CheckpointError, UsageError
from i2i.images import atomic_path

if TYPE_CHECKING:
    import torch
    from torch import nn

GENERATOR_FORMAT = "i2i.cyclegan.generator"
DISCRIMINATOR_FORMAT = "i2i.cyclegan.discriminator"
FORMAT_VERSION = "1"
LATEST_FILE = "latest"
BEST = "best"                     # checkpoints/best: kept by --eval-every
INFO_FILE = "info.json"           # what a named checkpoint (e.g. best) records about itself


def save_weights(path: str | os.PathLike, state_dict: dict[str, "torch.Tensor"], fmt: str,
                 config: dict[str, Any], overwrite: bool = True) -> Path:
    """Write ``state_dict`` as safetensors atomically, with ``config`` stored in the metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {"format": fmt, "version": FORMAT_VERSION, "config": json.dumps(config, sort_keys=True)}
    data = save(tensors, metadata=meta)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def read_weights(path: str | os.PathLike, fmt: str) -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
    """Read a safetensors file written by :func:`save_weights`; returns (state_dict, config dict)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises several error types for corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != fmt:
        found = meta.get("format", "no i2i metadata")
        raise CheckpointError(f"{path}: expected a {fmt} file, found {found}")
    try:
        config = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: config metadata is missing or corrupt") from exc
    return tensors, config


def save_generator(path: str | os.PathLike, net: "nn.Module", config: GeneratorConfig,
                   overwrite: bool = True) -> Path:
    """Save a generator (unwrapped from DDP/compile) with its config."""
    return save_weights(path, unwrap(net).state_dict(), GENERATOR_FORMAT, config.to_dict(), overwrite)


def _first_kernel(state: dict[str, "torch.Tensor"]) -> int | None:
    """The kernel side of the first convolution weight in ``state`` (by key order), or None."""
    first = next((v for v in state.values() if getattr(v, "ndim", 0) == 4), None)
    return int(first.shape[-1]) if first is not None else None


def load_state_strict(net: "nn.Module", state: dict[str, "torch.Tensor"], source: str) -> None:
    """``net.load_state_dict(state, strict=True)`` with a one-line CheckpointError on any mismatch."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with other shapes (e.g. {k}: {tuple(state[k].shape)} vs "
                         f"{tuple(own[k].shape)})")
        if state and all(k.startswith("mlp_") for k in state):     # CUT's PatchNCE head: linear layers only
            raise CheckpointError(f"{source}: holds CUT's PatchNCE feature head (netF: mlp_* layers), not a "
                                  "generator: give the generator file (the reference's latest_net_G.pth)")
        if _first_kernel(state) == 4 and _first_kernel(own) != 4:     # PatchGAN convs are 4 x 4, generators' not
            raise CheckpointError(f"{source}: holds a discriminator's weights (4x4 PatchGAN convolutions), not a "
                                  "generator's: give the generator file (the reference's latest_net_G_A.pth, "
                                  "latest_net_G.pth for CUT)")
        raise CheckpointError(f"{source}: weights do not fit this architecture: " + "; ".join(parts)
                              + " — check --netG/--ngf/--norm/--dropout")
    net.load_state_dict(state, strict=True)


def load_generator(path: str | os.PathLike, device: "torch.device | str" = "cpu"
                   ) -> tuple["nn.Module", GeneratorConfig]:
    """Build the generator described by a generator file and load its weights (eval mode)."""
    from i2i.cyclegan.networks import define_G

    state, cfg_dict = read_weights(path, GENERATOR_FORMAT)
    try:
        config = GeneratorConfig.from_dict(cfg_dict)
    except (TypeError, UsageError) as exc:
        raise CheckpointError(f"{path}: invalid generator config ({exc})") from exc
    net = define_G(config)
    load_state_strict(net, state, str(path))
    return net.to(device).eval(), config


def unwrap(net: "nn.Module") -> "nn.Module":
    """Strip DDP (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        if hasattr(net, "module") and not hasattr(net, "model"):
            net = net.module
        elif hasattr(net, "_orig_mod"):
            net = net._orig_mod
        else:
            return net


# Files of a complete, resumable CycleGAN checkpoint folder; a one-sided method (CUT) has G_A, D_A and F.
CHECKPOINT_FILES = ("G_A.safetensors", "G_B.safetensors", "D_A.safetensors", "D_B.safetensors",
                    "train_state.safetensors", "train_state.json")
_ALWAYS_PRESENT = ("G_A.safetensors", "train_state.safetensors", "train_state.json")


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory of a run, or None if the run has none."""
    run = Path(run_dir)
    pointer = run / LATEST_FILE
    complete = [p for p in sorted((run / "checkpoints").glob("iter_*"))
                if all((p / f).is_file() for f in _ALWAYS_PRESENT)]
    if not pointer.is_file():       # lost or never written (a copied run folder): the newest complete one
        return complete[-1] if complete else None
    target = run / pointer.read_text(encoding="utf-8").strip()
    if target.is_dir():
        return target
    # The pointer is only moved after its folder is in place, so this means a crash while an existing
    # checkpoint of the same name was being replaced: fall back to the newest complete one.
    if not complete:
        raise CheckpointError(f"{pointer}: points to {target}, which does not exist, and no other complete "
                              "checkpoint was found")
    return complete[-1]


def run_model(path: str | os.PathLike) -> str | None:
    """The training method recorded in a run folder's ``config.json`` (``path`` may also be one of its checkpoint
    folders), or None when there is none."""
    for folder in (Path(path), Path(path).parent.parent):
        cfg = folder / "config.json"
        if cfg.is_file():
            try:
                return json.loads(cfg.read_text(encoding="utf-8")).get("model", DEFAULT_MODEL)
            except (OSError, json.JSONDecodeError):
                return None
    return None


def best_checkpoint(run_dir: str | os.PathLike) -> Path:
    """``RUN/checkpoints/best`` (the lowest KID of a run trained with ``--eval-every``); a UsageError when the run
    has none."""
    run = Path(run_dir)
    if not run.is_dir() or not (run / "config.json").is_file():
        raise UsageError(f"{run}: --best needs a run folder (one with config.json)")
    folder = run / "checkpoints" / BEST
    if not (folder / "G_A.safetensors").is_file():
        raise UsageError(f"{run}: this run has no best checkpoint (checkpoints/{BEST}); train it with "
                         "--eval-every N to keep one (it can be turned on when resuming)")
    return folder


def checkpoint_info(folder: str | os.PathLike) -> dict[str, Any] | None:
    """What a named checkpoint folder records about itself (``info.json``: iteration, KID, ...), or None."""
    path = Path(folder) / INFO_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from exc


def checkpoint_folder(path: str | os.PathLike, best: bool = False) -> Path:
    """The checkpoint folder meant by ``path``: a run's latest (or, with ``best``, its best) checkpoint (``path``
    the run folder or its ``checkpoints/``), or ``path`` itself when it is a checkpoint folder."""
    p = Path(path)
    if p.name == "checkpoints" and (p.parent / "config.json").is_file():
        p = p.parent                     # a run's checkpoints/ folder means the run
    if best:
        return best_checkpoint(p)
    return latest_checkpoint(p) or p


def resolve_generator_file(checkpoint: str | os.PathLike, direction: str = "AtoB", best: bool = False) -> Path:
    """Find the generator file for ``direction`` given a run folder, a checkpoint folder or a file.

    ``AtoB`` uses G_A (A -> B), ``BtoA`` uses G_B. A single generator file is returned as is; with ``BtoA`` it
    must be a B -> A one by its name (``G_B...``, ``latest_net_G_B.pth``): the direction of another file cannot be
    chosen. ``best``: the run folder's best checkpoint (``--eval-every``) instead of its latest one.
    """
    if direction not in ("AtoB", "BtoA"):
        raise UsageError(f"--direction {direction!r}: use AtoB or BtoA")
    p = Path(checkpoint)
    if p.is_file():
        if best:
            raise UsageError(f"{p}: --best needs a run folder, not a file")
        if direction == "BtoA" and "G_B" not in p.name:
            raise UsageError(f"{p}: --direction BtoA picks G_B of a run or checkpoint folder; a file is one "
                             "generator, used as it is (give the B -> A file, e.g. G_B.safetensors, or drop "
                             "--direction)")
        return p
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such checkpoint (a run folder, checkpoint folder or .safetensors file)")
    ckpt = checkpoint_folder(p, best)
    name = "G_A.safetensors" if direction == "AtoB" else "G_B.safetensors"
    if (ckpt / name).is_file():
        return ckpt / name
    if direction == "BtoA" and (ckpt / "G_A.safetensors").is_file():
        model = run_model(p) or "a one-sided method"
        raise UsageError(f"{p}: --direction BtoA is not available: this run was trained with {model}, which learns "
                         "only A -> B (it has no B -> A generator); use --direction AtoB")
    single = sorted(ckpt.glob("*.safetensors"))
    if len(single) == 1:
        return single[0]
    reference = _reference_generator(ckpt, direction)
    if reference is not None:
        return reference
    from i2i.cyclegan.run_aside import set_aside_note

    raise CheckpointError(f"{p}: no {name} found (is this a run folder with at least one saved checkpoint?)"
                          + set_aside_note(p))


def _reference_generator(folder: Path, direction: str) -> Path | None:
    """A reference checkpoint folder (``checkpoints/NAME`` of the CycleGAN/CUT code): its latest generator for
    ``direction`` (``latest_net_G_A.pth`` / ``latest_net_G_B.pth``; the one ``latest_net_G.pth`` of a pretrained
    CycleGAN model, CUT or pix2pix with the default direction), as the reference's test script loads by default
    (``--epoch latest``); another epoch's file is given as ``-c`` itself. None when the folder holds no reference
    generator at all."""
    names = {"AtoB": ("latest_net_G_A.pth", "latest_net_G.pth"), "BtoA": ("latest_net_G_B.pth",)}[direction]
    found = next((folder / n for n in names if (folder / n).is_file()), None)
    if found is not None:
        return found
    others = sorted(q.name for q in folder.glob("*_net_G*.pth"))
    if not others:
        return None
    if direction == "BtoA" and (folder / "latest_net_G.pth").is_file():
        raise UsageError(f"{folder}: --direction BtoA is not available: latest_net_G.pth is one generator (a "
                         "pretrained CycleGAN model's, CUT's, FastCUT's or pix2pix's), used as it is; drop "
                         "--direction")
    raise CheckpointError(f"{folder}: no {names[0]} here; give one of its generator files as -c: "
                          + ", ".join(others[:8]) + (" ..." if len(others) > 8 else ""))
