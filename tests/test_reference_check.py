"""examples/reference_check/: the scripts start, and refuse a --reference folder that is not the reference checkout
(fast: no training, no reference needed)."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "examples" / "reference_check"
EXPECTED = {"cyclegan_step.py": "models/cycle_gan_model.py", "cut_step.py": "models/cut_model.py"}


def script(name, *args):
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_help(name):
    out = script(name, "--help")
    assert out.returncode == 0, out.stderr
    assert "--reference" in out.stdout and "--data" in out.stdout and "--out" in out.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_folder_without_the_reference_exits_2(name, tmp_path):
    (tmp_path / "models").mkdir()
    out = script(name, "--reference", tmp_path, "--data", tmp_path, "--iters", 1)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --reference"), out.stderr
    assert EXPECTED[name] in lines[0] and "missing" in lines[0]
