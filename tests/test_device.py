"""Precision policy: native-bf16 detection (with the CPU's capabilities mocked), auto, and the slow-bf16 warning."""

from __future__ import annotations

import pytest
import torch

from i2i import device as dev_mod
from i2i.device import check_precision, cpu_native_bf16, precision_warning, resolve_precision
from i2i.errors import UsageError

CPU = torch.device("cpu")


def _mock_cpu(monkeypatch, amx: bool | None, avx512_bf16: bool | None) -> None:
    """Make torch's CPU probes answer as given; None removes that probe (an older torch)."""
    for name, value in (("_is_amx_tile_supported", amx), ("_is_avx512_bf16_supported", avx512_bf16)):
        if value is None:
            monkeypatch.delattr(torch.cpu, name, raising=False)
        else:
            monkeypatch.setattr(torch.cpu, name, lambda v=value: v, raising=False)


@pytest.mark.parametrize("amx, avx512_bf16, native", [
    (True, False, True), (False, True, True), (True, True, True), (False, False, False)])
def test_native_bf16_from_torch_probes(monkeypatch, amx, avx512_bf16, native):
    _mock_cpu(monkeypatch, amx, avx512_bf16)
    monkeypatch.setattr(dev_mod, "_cpuinfo_flags", lambda: pytest.fail("cpuinfo read although torch answered"))
    assert cpu_native_bf16() is native
    assert resolve_precision("auto", CPU) == ("bf16" if native else "fp32")
    assert (precision_warning("bf16", CPU) is None) is native


@pytest.mark.parametrize("flags, native", [
    ({"avx2", "avx512f", "avx512bw"}, False),            # AVX-512 alone: bf16 is emulated
    ({"avx512f", "avx512_bf16"}, True),
    ({"amx_tile", "amx_bf16", "avx512f"}, True),
    (set(), False), (None, False)])                      # no flags line / no /proc/cpuinfo
def test_native_bf16_from_cpuinfo_when_torch_cannot_say(monkeypatch, flags, native):
    _mock_cpu(monkeypatch, None, None)
    monkeypatch.setattr(dev_mod, "_cpuinfo_flags", lambda: flags)
    assert cpu_native_bf16() is native


def test_cpuinfo_parser(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert dev_mod._cpuinfo_flags(str(info)) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert dev_mod._cpuinfo_flags(str(tmp_path / "missing")) is None


def test_warning_names_the_problem_and_only_for_bf16_on_cpu(monkeypatch):
    _mock_cpu(monkeypatch, False, False)
    message = precision_warning("bf16", CPU)
    assert message and "slower than fp32" in message and "AMX" in message
    assert precision_warning("fp32", CPU) is None
    assert precision_warning("bf16", torch.device("cuda")) is None


def test_check_precision_accepts_auto_and_refuses_the_rest(monkeypatch):
    _mock_cpu(monkeypatch, False, False)
    assert check_precision("auto", CPU) == "fp32"
    assert check_precision("bf16", CPU) == "bf16"
    with pytest.raises(UsageError, match="auto"):
        check_precision("fp8", CPU)
    with pytest.raises(UsageError, match="CUDA"):
        check_precision("fp16", CPU)
