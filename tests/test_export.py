"""ONNX export of CycleGAN generators, checked with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from i2i.cyclegan.config import GeneratorConfig  # noqa: E402
from i2i.cyclegan.export import export_onnx  # noqa: E402
from i2i.cyclegan.networks import define_G  # noqa: E402
from i2i.errors import OutputError  # noqa: E402

CFG = GeneratorConfig(arch="resnet_6blocks", ngf=8)


def test_export_resnet_dynamic_sizes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gen = define_G(CFG)
    out = tmp_path / "g.onnx"
    info = export_onnx(gen, CFG, out, size=64)
    assert info["path"] == out and out.is_file()
    assert info["checked"] is True and info["max_abs_diff"] < 1e-4

    # Independently run the file at two sizes (one non-square) and batch 2.
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    gen.eval()
    for shape in [(1, 3, 64, 64), (2, 3, 48, 80)]:
        x = torch.rand(shape) * 2 - 1
        with torch.no_grad():
            expected = gen(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == shape
        assert abs(got - expected).max() < 1e-4


def test_export_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "g.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError):
        export_onnx(define_G(CFG), CFG, out, size=32)
    assert out.read_bytes() == b"keep me"
    info = export_onnx(define_G(CFG), CFG, out, size=32, check=False, overwrite=True)
    assert info["checked"] is False and info["max_abs_diff"] is None
    onnx.checker.check_model(onnx.load(str(out)))


def test_export_static_dcgan(tmp_path: Path) -> None:
    cfg = GeneratorConfig(arch="dcgan", ngf=8, norm="batch")
    info = export_onnx(define_G(cfg), cfg, tmp_path / "d.onnx", size=50, dynamic=False)  # rounded up to 64
    assert info["checked"] and info["max_abs_diff"] < 1e-4
    model = onnx.load(str(tmp_path / "d.onnx"))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]


@pytest.mark.parametrize("opset", [5, 99])
def test_an_opset_torch_cannot_write_is_a_usage_error_before_loading(tmp_path: Path, monkeypatch, opset) -> None:
    from typer.testing import CliRunner

    import i2i.cli.cyclegan as cli
    from i2i.cli.app import app

    monkeypatch.setattr(cli, "_load_any_generator", lambda *a, **k: pytest.fail("weights were read"))
    res = CliRunner().invoke(app, ["cyclegan", "export", "-c", str(tmp_path / "run"), "--onnx",
                                   str(tmp_path / "g.onnx"), "--opset", str(opset)])
    assert res.exit_code == 2 and res.stderr.count(f"--opset {opset}") == 1 and "graph" not in res.stderr
    assert not (tmp_path / "g.onnx").exists()


@pytest.mark.parametrize("name, message", [("outdir/", "a folder"), ("existing", "a folder"),
                                           ("g.onx", "must end in .onnx")])
def test_an_onnx_name_that_is_not_a_file_name_is_refused_before_loading(tmp_path: Path, monkeypatch, name,
                                                                        message) -> None:
    from typer.testing import CliRunner

    import i2i.cli.cyclegan as cli
    from i2i.cli.app import app

    (tmp_path / "existing").mkdir()
    monkeypatch.setattr(cli, "_load_any_generator", lambda *a, **k: pytest.fail("weights were read"))
    res = CliRunner().invoke(app, ["cyclegan", "export", "-c", str(tmp_path / "run"), "--onnx",
                                   str(tmp_path) + "/" + name, "--overwrite"])
    assert res.exit_code == 2 and message in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]
