"""Device and precision policy, seeding, and the Accelerator factory shared by both backends."""

from __future__ import annotations

import contextlib
import os
import random
from typing import TYPE_CHECKING, Iterator, Literal

from i2i.errors import UsageError

if TYPE_CHECKING:
    import torch

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


def resolve_device(name: str | None = None) -> "torch.device":
    """Pick the device: ``name`` if given (``cpu``, ``cuda``, ``cuda:1``, ``mps``), else cuda, then mps, then cpu.

    Under ``accelerate launch`` / torchrun on CUDA, ``cuda`` means ``cuda:LOCAL_RANK``.
    """
    import torch

    if name is None or name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"unknown device {name!r} (use cpu, cuda, cuda:N or mps)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine")
        if device.index is None and "LOCAL_RANK" in os.environ:
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available on this machine")
    return device


def check_precision(precision: str, device: "torch.device") -> Precision:
    """Validate ``precision`` for ``device``: fp16 autocast is allowed only on CUDA."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA device; use bf16 on CPU/MPS")
    return precision  # type: ignore[return-value]


def autocast_dtype(precision: Precision) -> "torch.dtype | None":
    """The autocast dtype for ``precision`` (None for fp32)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextlib.contextmanager
def autocast(device: "torch.device", precision: Precision) -> Iterator[None]:
    """Mixed-precision context for ``precision`` on ``device``; a no-op for fp32."""
    import torch

    dtype = autocast_dtype(precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's global generators (all devices)."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def use_channels_last(device: "torch.device") -> bool:
    """Whether channels_last memory format is worth using for conv nets on ``device``.

    It speeds up convolutions on CUDA (tensor cores). On CPU (oneDNN, torch 2.13, 2 cores with AMX) it measured
    4-25 % slower for CycleGAN's nets in fp32 and bf16 (examples/benchmarks/), so it is off there; MPS gains
    nothing.
    """
    return device.type == "cuda"


def make_accelerator(precision: Precision = "fp32", cpu: bool = False, log_with: str | None = None,
                     project_dir: str | None = None):
    """An ``accelerate.Accelerator`` for training; works unchanged under ``accelerate launch`` (DDP).

    Mixed precision is applied by our own :func:`autocast` around forward passes, so the Accelerator is
    created with ``mixed_precision="no"``; fp16 uses a GradScaler in the trainer.
    """
    from accelerate import Accelerator

    kwargs = {}
    if log_with:
        from accelerate.tracking import get_available_trackers

        available = [str(getattr(t, "value", t)) for t in get_available_trackers()]
        if log_with not in available:
            from i2i.errors import UsageError

            raise UsageError(f"--log-with {log_with}: that tracker is not installed here (available: "
                             f"{', '.join(available) or 'none'}); e.g. pip install tensorboard")
        kwargs["log_with"] = log_with
        kwargs["project_dir"] = project_dir
    return Accelerator(cpu=cpu, mixed_precision="no", **kwargs)
