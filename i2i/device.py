"""Device and precision policy, seeding, and the Accelerator factory shared by both backends."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Iterator, Literal

from i2i.errors import UsageError

if TYPE_CHECKING:
    import torch

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
# What --precision accepts: the three above, or "auto" (resolved per device by resolve_precision).
PRECISION_CHOICES: tuple[str, ...] = (*PRECISIONS, "auto")
# /proc/cpuinfo flags of the x86 units that compute bf16 natively: AMX tiles (Intel Sapphire Rapids and later)
# and AVX-512 BF16 dot products (Intel Cooper Lake / Sapphire Rapids, AMD Zen 4 and later).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


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


def _cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str] | None:
    """The CPU feature flags the Linux kernel reports, or None where there is no such file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        return None
    return set()


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX-512 BF16), so that bf16 autocast can beat fp32.

    Asks torch first (``torch.cpu._is_amx_tile_supported`` / ``_is_avx512_bf16_supported``, what oneDNN uses),
    then the kernel's ``/proc/cpuinfo`` flags. Without either unit, torch emulates bf16 with conversions and a
    bf16 step is slower than fp32 (measured 2.1x slower on an AVX-512 CPU without them).
    """
    import torch

    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if any(callable(probe) for probe in probes):
        return any(bool(probe()) for probe in probes if callable(probe))
    flags = _cpuinfo_flags()
    return bool(flags and any(flag in flags for flag in NATIVE_BF16_FLAGS))


def native_bf16(device: "torch.device") -> bool:
    """Whether ``device`` runs bf16 natively: CUDA with bf16 support (Ampere and later), or a CPU with
    :func:`cpu_native_bf16`. MPS: no (its bf16 gains nothing for these nets)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_native_bf16()
    return False


def resolve_precision(precision: str, device: "torch.device") -> Precision:
    """``precision`` for ``device``, with ``auto`` resolved: bf16 where the device computes it natively
    (:func:`native_bf16`), else fp32. fp16 is never picked automatically (it needs loss scaling)."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return check_precision(precision, device)


def precision_warning(precision: str, device: "torch.device") -> str | None:
    """A one-line warning when ``precision`` will make ``device`` slower rather than faster, else None."""
    if precision == "bf16" and device.type == "cpu" and not cpu_native_bf16():
        return ("--precision bf16: this CPU has neither AMX nor AVX-512 BF16, so bf16 is emulated and will be "
                "slower than fp32 (use fp32, or --precision auto)")
    return None


def check_precision(precision: str, device: "torch.device") -> Precision:
    """Validate ``precision`` for ``device``: fp16 autocast is allowed only on CUDA. ``auto`` is resolved."""
    if precision == "auto":
        return resolve_precision(precision, device)
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISION_CHOICES)}")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA device; use bf16 on CPU/MPS")
    return precision  # type: ignore[return-value]


def autocast_dtype(precision: Precision) -> "torch.dtype | None":
    """The autocast dtype for ``precision`` (None for fp32)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextlib.contextmanager
def autocast(device: "torch.device", precision: Precision) -> Iterator[None]:
    """Mixed-precision context for ``precision`` on ``device`` ("auto" resolved: :func:`resolve_precision`); a
    no-op for fp32."""
    import torch

    dtype = autocast_dtype(resolve_precision(precision, device) if precision == "auto" else precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def use_channels_last(device: "torch.device", choice: str = "auto") -> bool:
    """Whether conv nets on ``device`` run in channels_last memory format: ``choice`` is one of
    :data:`MEMORY_FORMATS`; ``auto`` means only on CUDA.

    It speeds up convolutions on CUDA (tensor cores). On CPU it depends on the host and the net: with torch
    2.13 (oneDNN, 2 cores) it measured 4-25 % slower for CycleGAN's reference nets at 128-256 px in fp32 and
    bf16, but 7-30 % faster for the small builtin:shapes nets at 32 px (docs/performance.md), so ``auto`` keeps
    it off on CPU and the shapes preset asks for it. MPS gains nothing.
    """
    if choice not in MEMORY_FORMATS:
        raise ValueError(f"unknown memory format {choice!r} (known: {', '.join(MEMORY_FORMATS)})")
    return choice == "channels_last" or (choice == "auto" and device.type == "cuda")


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
