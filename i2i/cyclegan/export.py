"""Export a CycleGAN generator to ONNX and check the file against PyTorch with onnxruntime.

The graph takes ``input`` of shape ``(N, input_nc, H, W)`` in [-1, 1] and returns ``output`` of shape
``(N, output_nc, H, W)``; with ``dynamic=True`` N, H and W are free (H and W must still be multiples of
:func:`~i2i.cyclegan.networks.required_multiple`). The TorchScript-based exporter (``dynamo=False``) is used:
it needs only ``onnx``, whereas the dynamo exporter also needs ``onnxscript``.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from i2i.cyclegan.checkpoint import unwrap
from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.job_config import EXPORT_OPSET, EXPORT_SIZE
from i2i.cyclegan.networks import min_generator_side, required_multiple
from i2i.errors import CheckpointError, OutputError, UsageError
from i2i.images import atomic_path

MAX_ABS_DIFF = 1e-3


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _check_sizes(size: int, multiple: int, dynamic: bool) -> list[int]:
    """The square sizes to check at: ``size`` and, if dynamic, a second, different valid size."""
    sizes = [size]
    if dynamic:
        sizes.append(size + multiple if size <= 4 * multiple else size - multiple)
    return sizes


def _max_diff_with_onnxruntime(model_bytes: bytes, generator: nn.Module, cfg: GeneratorConfig,
                               sizes: list[int]) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for i, side in enumerate(sizes):
        batch = 1 + i  # also exercises the dynamic batch axis
        x = torch.rand(batch, cfg.input_nc, side, side, generator=gen) * 2 - 1
        with torch.no_grad():
            expected = generator(x).numpy()
        got = session.run(["output"], {"input": x.numpy()})[0]
        if got.shape != expected.shape:
            raise CheckpointError(f"onnx check failed: output shape {got.shape}, expected {expected.shape}")
        worst = max(worst, float(abs(got - expected).max()))
    return worst


def check_opset(opset: int) -> int:
    """``opset`` if torch's ONNX exporter writes it (7-23 with torch 2.13), else a :class:`UsageError`."""
    try:
        from torch.onnx._constants import ONNX_MAX_OPSET, ONNX_MIN_OPSET
    except ImportError:              # a torch that moved them: the range every recent torch writes
        ONNX_MIN_OPSET, ONNX_MAX_OPSET = 7, 20
    if not ONNX_MIN_OPSET <= opset <= ONNX_MAX_OPSET:
        raise UsageError(f"--opset {opset}: this torch exports opsets {ONNX_MIN_OPSET} to {ONNX_MAX_OPSET}")
    return opset


def check_onnx_path(path: str | os.PathLike) -> Path:
    """``path`` if it names an ``.onnx`` file, else a :class:`UsageError` (a folder, or another extension: the
    file would not be what was asked for)."""
    p = Path(path)
    if p.is_dir() or os.fspath(path).endswith(("/", os.sep)):
        raise UsageError(f"--onnx {path}: a folder; give the output file, e.g. {p / 'G_A.onnx'}")
    if p.suffix.lower() != ".onnx":
        raise UsageError(f"--onnx {path}: the output file's name must end in .onnx")
    return p


def export_onnx(generator: nn.Module, cfg: GeneratorConfig, out_path: str | os.PathLike, size: int = EXPORT_SIZE,
                opset: int = EXPORT_OPSET, dynamic: bool = True, check: bool = True,
                overwrite: bool = False) -> dict[str, Any]:
    """Export ``generator`` (described by ``cfg``) to ONNX at ``out_path``, atomically.

    ``size`` is the side of the square example input used for tracing, rounded up to a size the generator runs
    at (a valid multiple, and at least its smallest side).
    With ``check`` and onnxruntime installed, PyTorch and onnxruntime are run on random inputs (at ``size`` and,
    if ``dynamic``, at a second size and batch) before the file is moved into place.

    Returns ``{"path": Path, "max_abs_diff": float | None, "checked": bool}``. Raises :class:`UsageError` if
    ``onnx`` is not installed, :class:`CheckpointError` if the export fails or the outputs differ by more than
    1e-3, and :class:`~i2i.errors.OutputError` if ``out_path`` exists and ``overwrite`` is False.
    """
    try:
        import onnx
    except ImportError:
        raise UsageError("ONNX export needs the onnx package: pip install 'i2i[onnx]'") from None
    if size < 1:
        raise UsageError(f"--size must be positive (got {size})")
    check_opset(opset)
    out_path = check_onnx_path(out_path)
    if out_path.exists() and not overwrite:  # fail before the (slow) export; atomic_path checks again
        raise OutputError(f"{out_path}: already exists (pass --overwrite to replace it)")

    multiple = required_multiple(cfg)
    size = _round_up(max(size, min_generator_side(cfg)), multiple)
    # Export a float32 CPU copy in eval mode; the caller's module is left untouched.
    net = copy.deepcopy(unwrap(generator)).float().cpu().eval()
    example = torch.zeros(1, cfg.input_nc, size, size)
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer / deprecation chatter
            torch.onnx.export(net, (example,), buffer, input_names=["input"], output_names=["output"],
                              dynamic_axes=axes if dynamic else None, opset_version=opset, do_constant_folding=True,
                              dynamo=False)
    except Exception as exc:
        raise CheckpointError(f"{out_path}: ONNX export failed ({type(exc).__name__}: {exc})") from exc
    data = buffer.getvalue()
    try:
        onnx.checker.check_model(onnx.load_from_string(data))
    except Exception as exc:
        raise CheckpointError(f"{out_path}: the exported ONNX model is invalid ({exc})") from exc

    checked, max_diff = False, None
    if check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            pass
        else:
            max_diff = _max_diff_with_onnxruntime(data, net, cfg, _check_sizes(size, multiple, dynamic))
            checked = True
            if max_diff > MAX_ABS_DIFF:
                raise CheckpointError(f"{out_path}: onnxruntime output differs from PyTorch by {max_diff:.3g} "
                                      f"(more than {MAX_ABS_DIFF}); the file was not written")

    with atomic_path(out_path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return {"path": out_path, "max_abs_diff": max_diff, "checked": checked}
