"""Saving and restoring the full training state without pickle: tensors in safetensors, the rest in JSON.

What is saved: both optimizers (Adam moments and step counts, param groups), both LR schedulers, the GradScaler
(fp16), both image pools (images and their RNG), torch's RNG states, and the position in training (epoch,
iteration inside the epoch, global iteration). Restoring all of it makes a resumed run continue exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from i2i.errors import CheckpointError

STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"
STATE_VERSION = 1


def _split_optimizer(prefix: str, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    meta: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        entry: dict[str, Any] = {}
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}/{pid}/{key}"] = value.detach().cpu().contiguous()
                entry[key] = {"tensor": f"{prefix}/{pid}/{key}"}
            else:
                entry[key] = value
        meta["state"][str(pid)] = entry
    return meta


def _join_optimizer(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state = {}
    for pid, entry in meta["state"].items():
        state[int(pid)] = {k: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v
                           for k, v in entry.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def _match_param_layout(opt: torch.optim.Optimizer) -> None:
    """Give each restored moment tensor its parameter's memory layout (e.g. channels_last): loading yields
    contiguous tensors, and fused/foreach kernels must see the same layout as in the uninterrupted run."""
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    opt.state[p][key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def save_train_state(folder: Path, *, optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, Any],
                     pools: dict[str, Any], scaler: Any | None, position: dict[str, int]) -> None:
    """Write ``train_state.safetensors`` and ``train_state.json`` into ``folder`` (a fresh temp checkpoint dir)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"version": STATE_VERSION, "position": position, "optimizers": {}, "schedulers": {},
                            "pools": {}}
    for name, opt in optimizers.items():
        meta["optimizers"][name] = _split_optimizer(f"opt_{name}", opt.state_dict(), tensors)
    for name, sched in schedulers.items():
        meta["schedulers"][name] = sched.state_dict()
    for name, pool in pools.items():
        pool_tensors, pool_meta = pool.state()
        tensors.update({f"pool_{name}/{k}": v for k, v in pool_tensors.items()})
        meta["pools"][name] = pool_meta
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{i}"] = s
    meta["scaler"] = scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
    save_file(tensors, str(folder / STATE_TENSORS))
    (folder / STATE_JSON).write_text(json.dumps(meta), encoding="utf-8")


def load_train_state(folder: Path, *, optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, Any],
                     pools: dict[str, Any], scaler: Any | None, device: torch.device) -> dict[str, int]:
    """Restore everything written by :func:`save_train_state`; returns the saved position."""
    from safetensors.torch import load_file

    try:
        meta = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / STATE_TENSORS))
    except (OSError, json.JSONDecodeError, Exception) as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{folder}: training state is missing or corrupt ({exc}); "
                              "this checkpoint cannot be resumed") from exc
    if meta.get("version") != STATE_VERSION:
        raise CheckpointError(f"{folder}: training state version {meta.get('version')} is not supported")
    for name, opt in optimizers.items():
        opt.load_state_dict(_join_optimizer(meta["optimizers"][name], tensors))
        _match_param_layout(opt)
    for name, sched in schedulers.items():
        sched.load_state_dict(meta["schedulers"][name])
    for name, pool in pools.items():
        prefix = f"pool_{name}/"
        pool.load_state({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                        meta["pools"][name], device)
    torch.set_rng_state(tensors["rng/torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda")]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    return meta["position"]
