"""FID/KID against closed forms computed here independently, extractor plumbing, the Inception weights route, the
training-time KID's RNG neutrality, and that no i2i module imports scikit-learn (the domain score that needed it
was removed). Tiny random extractors only (offline, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from i2i.errors import CheckpointError, InputError, UsageError
from i2i.metrics.features import FeatureExtractor
from i2i.metrics.frechet import fid
from i2i.metrics.kernel import default_subset_size, kid
from i2i.metrics.random_cnn import RandomCNN
from i2i.metrics.registry import build_extractor
from i2i.metrics.training import generator_kid, real_features


def gaussian(n, mean, std, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(mean), generator=g, dtype=torch.float64) * torch.tensor(std) + torch.tensor(mean)


def psd_sqrt(m):
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid_closed_form(x, y):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), with Tr (S1 S2)^1/2 = Tr (S1^1/2 S2 S1^1/2)^1/2."""
    x, y = x.numpy(), y.numpy()
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    r1 = psd_sqrt(s1)
    cross = np.trace(psd_sqrt(r1 @ s2 @ r1))
    return float(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)


def test_fid_of_a_set_with_itself_is_zero():
    x = gaussian(300, [0.0] * 6, [1.0] * 6, 0)
    assert abs(fid(x, x)) < 1e-6


def test_fid_matches_closed_form_for_diagonal_gaussians():
    x = gaussian(4000, [0.0, 0.0, 0.0], [1.0, 2.0, 0.5], 1)
    y = gaussian(4000, [1.0, -1.0, 0.0], [1.0, 1.0, 1.5], 2)
    expected = fid_closed_form(x, y)
    # and the population value, for diagonal covariances: ||dmu||^2 + sum (sqrt s1 - sqrt s2)^2
    population = 1 + 1 + 0 + (2 - 1) ** 2 + (0.5 - 1.5) ** 2
    assert fid(x, y) == pytest.approx(expected, rel=1e-6)
    assert fid(x, y) == pytest.approx(population, abs=0.15)


def test_fid_matches_closed_form_for_correlated_features():
    g = torch.Generator().manual_seed(3)
    mix = torch.randn(5, 5, generator=g, dtype=torch.float64)
    x = gaussian(500, [0.0] * 5, [1.0] * 5, 4) @ mix
    y = gaussian(400, [0.5] * 5, [1.0] * 5, 5) @ mix.T
    assert fid(x, y) == pytest.approx(fid_closed_form(x, y), rel=1e-6)


def unbiased_poly_mmd(x, y):
    """The unbiased MMD^2 estimate with k(a, b) = (a.b / D + 1)^3, by hand."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m = x.shape[0]
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum())
                 / (m * (m - 1)) - 2 * kxy.mean())


def test_kid_with_one_full_subset_is_the_unbiased_mmd():
    x = gaussian(60, [0.0] * 4, [1.0] * 4, 6)
    y = gaussian(60, [0.3, 0.0, -0.2, 0.1], [1.0, 1.5, 1.0, 0.8], 7)
    result = kid(x, y, subsets=3, subset_size=60)
    assert result.mean == pytest.approx(unbiased_poly_mmd(x, y), rel=1e-9)
    assert result.std == pytest.approx(0.0, abs=1e-12)  # every subset is the whole set


def test_kid_subsets_average_the_estimates_and_report_their_spread():
    x = gaussian(80, [0.0] * 4, [1.0] * 4, 8)
    y = gaussian(70, [0.5] * 4, [1.0] * 4, 9)
    result = kid(x, y, subsets=20, seed=5)
    assert result.subset_size == default_subset_size(80, 70) == 35
    # recompute by hand with the same subset draws (torch.randperm after manual_seed(seed))
    gen_state = torch.get_rng_state()
    torch.manual_seed(5)
    values = []
    for _ in range(20):
        px, py = torch.randperm(80)[:35], torch.randperm(70)[:35]
        values.append(unbiased_poly_mmd(x[px], y[py]))
    torch.set_rng_state(gen_state)
    assert result.mean == pytest.approx(np.mean(values), rel=1e-9)
    assert result.std == pytest.approx(np.std(values), rel=1e-6)
    assert result.std > 0
    assert kid(x, y, subsets=20, seed=5) == result


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    x = gaussian(400, [0.0] * 4, [1.0] * 4, 10)
    same = gaussian(400, [0.0] * 4, [1.0] * 4, 11)
    other = gaussian(400, [1.0] * 4, [1.0] * 4, 12)
    near, far = kid(x, same, subsets=10), kid(x, other, subsets=10)
    assert abs(near.mean) < 2 * near.std < 0.2        # zero within its spread
    assert far.mean > 5 and far.mean > 10 * far.std


def test_too_few_images_are_input_errors():
    x = gaussian(3, [0.0] * 2, [1.0] * 2, 0)
    with pytest.raises(InputError):
        fid(x[:1], x)
    with pytest.raises(InputError):
        kid(x, x[:1])


class Recorder(nn.Module):
    """Returns per-image mean of each channel; remembers what it was given."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x):
        self.calls.append(x.clone())
        return x.float().mean(dim=(2, 3))[:, :, None, None]


def test_extractor_resizes_batches_and_converts_value_range():
    rec = Recorder()
    ex = FeatureExtractor(rec, name="rec", size=(8, 12), value_range="uint8", batch_size=2)
    x = torch.full((5, 3, 20, 20), -1.0)
    x[:, 1] = 1.0
    feats = ex(x)
    assert feats.shape == (5, 3) and feats.dtype == torch.float64
    assert [c.shape for c in rec.calls] == [(2, 3, 8, 12), (2, 3, 8, 12), (1, 3, 8, 12)]
    assert rec.calls[0].dtype == torch.uint8
    assert feats[0].tolist() == [0.0, 255.0, 0.0]
    for rng, lo, hi in (("unit", 0.0, 1.0), ("signed", -1.0, 1.0)):
        out = FeatureExtractor(Recorder(), name="r", value_range=rng)(x)
        assert out[0].tolist() == [lo, hi, lo]
    imagenet = FeatureExtractor(Recorder(), name="r", value_range="imagenet")(x)
    assert imagenet[0, 0] == pytest.approx(-0.485 / 0.229)


def test_extractor_takes_gray_rgba_and_mixed_size_pil_images():
    rec = Recorder()
    ex = FeatureExtractor(rec, name="rec", size=None, value_range="unit", batch_size=8)
    gray = Image.new("L", (10, 10), 255)
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))      # fully transparent: white
    red = Image.new("RGB", (6, 4), (255, 0, 0))
    feats = ex([gray, clear, red, red])
    assert [c.shape for c in rec.calls] == [(2, 3, 10, 10), (2, 3, 4, 6)]   # grouped by size, order kept
    assert feats[:2].tolist() == [[1.0, 1.0, 1.0]] * 2
    assert feats[2].tolist() == [1.0, 0.0, 0.0]
    one_channel = torch.zeros(2, 1, 5, 5)
    assert ex(one_channel).shape == (2, 3)


def test_extractor_refuses_bad_settings():
    with pytest.raises(UsageError):
        FeatureExtractor(Recorder(), name="r", value_range="0-255")
    with pytest.raises(UsageError):
        FeatureExtractor(Recorder(), name="r")(torch.zeros(2, 5, 4, 4))
    with pytest.raises(UsageError):
        build_extractor("vgg")


def test_random_cnn_is_fixed_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b = RandomCNN(seed=0), RandomCNN(seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.stages[0][0].weight, RandomCNN(seed=1).stages[0][0].weight)
    ex = build_extractor("random-cnn")
    assert "not Inception" in ex.name
    assert ex(torch.rand(3, 3, 40, 40) * 2 - 1).shape == (3, 7 * 32)


def test_inception_without_weights_names_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("I2I_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(CheckpointError) as err:
        build_extractor("inception")
    msg = str(err.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in msg and "https://github.com/toshas" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg and "--inception-weights" in msg
    assert err.value.exit_code == 4
    monkeypatch.setenv("I2I_INCEPTION_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(CheckpointError, match="I2I_INCEPTION_WEIGHTS .*missing.pth: no such file"):
        build_extractor("inception")


def test_inception_weights_file_must_be_weights_only(tmp_path):
    from i2i.metrics.inception import check_weights_file

    bad = tmp_path / "bad.pth"
    torch.save({"x": object()}, bad)
    with pytest.raises(CheckpointError, match="weights-only"):
        check_weights_file(bad)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not torch-fidelity's Inception"):
        check_weights_file(other)


def tiny_generator():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                         nn.Conv2d(8, 3, 3, padding=1), nn.Tanh())


def test_image_batch_is_a_fixed_resized_tensor(tmp_path):
    from i2i.metrics.training import image_batch

    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("L", (20, 20), 0).save(tmp_path / "b.png")
    x = image_batch([tmp_path / "a.png", tmp_path / "b.png"], 16)
    assert x.shape == (2, 3, 16, 16)
    assert x[0, 0].min() == 1.0 and x[0, 1].max() == -1.0 and x[1].max() == -1.0
    with pytest.raises(InputError):
        image_batch([tmp_path / "missing.png"], 16)


def test_generator_kid_is_deterministic_and_leaves_rng_and_mode_alone():
    torch.manual_seed(0)
    gen = tiny_generator().train()
    source = torch.rand(12, 3, 16, 16) * 2 - 1
    target = torch.rand(14, 3, 16, 16) * 2 - 1
    ex = build_extractor("random-cnn")
    bn_before = gen[1].running_mean.clone()
    state = torch.get_rng_state()
    first = generator_kid(gen, source, target, ex, subsets=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert gen.training and torch.equal(gen[1].running_mean, bn_before)
    feats = real_features(ex, target)
    again = generator_kid(gen, source, feats, ex, subsets=5)
    assert again == first and first.subset_size == 6
    # a training step drawn right after evaluation is the one drawn without it
    torch.manual_seed(1)
    plain = torch.rand(3)
    torch.manual_seed(1)
    generator_kid(gen, source, feats, ex, subsets=5)
    assert torch.equal(torch.rand(3), plain)


def test_importing_the_metrics_modules_loads_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys, i2i.metrics, i2i.metrics.registry, i2i.metrics.score, i2i.cli.score, i2i.cli.eval_table\n"
            "heavy = [m for m in ('torch', 'transformers', 'torchmetrics') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_no_i2i_module_imports_scikit_learn_and_it_is_not_declared():
    """Every import statement of i2i/ (top level or inside a function) and every module name given as a string
    (lazy tables, ``import_module``), so a lazy ``from sklearn ... import`` is found too."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "i2i"
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else [])
            found += [f"{path.relative_to(package.parent)}:{node.lineno}" for n in names
                      if n == "sklearn" or n.startswith("sklearn.")]
    assert len(list(package.rglob("*.py"))) > 50 and not found, found
    pyproject = (package.parent / "pyproject.toml").read_text()
    assert "scikit-learn" not in pyproject and '"scipy>=' in pyproject      # scipy stays: i2i/shapes.py


def test_inception_without_torch_fidelity_says_what_to_install(monkeypatch, tmp_path):
    import torchmetrics.utilities.imports as tm_imports

    monkeypatch.setattr(tm_imports, "_TORCH_FIDELITY_AVAILABLE", False)
    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save({"Mixed_7c.branch_pool.conv.weight": torch.zeros(1)}, weights)
    with pytest.raises(CheckpointError, match=r"pip install 'i2i\[inception\]'"):
        build_extractor("inception", inception_weights=weights)
    with pytest.raises(UsageError, match="only for --features inception"):
        build_extractor("random-cnn", inception_weights=weights)
