"""The order of the suite's work units for pytest-xdist (tests/conftest.py): files with a heavy test first."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _collected(*files: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider",
                           *files], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_files_with_a_heavy_test_come_first_each_whole_and_in_its_own_order():
    files = ["tests/test_shapes.py", "tests/test_docs.py", "tests/test_demo_model.py"]
    ids = _collected(*files)
    order = [node.split("::")[0] for node in ids]
    first = [f for k, f in enumerate(order) if k == 0 or order[k - 1] != f]
    assert first == ["tests/test_docs.py", "tests/test_demo_model.py", "tests/test_shapes.py"]   # each file whole
    for name in files:
        assert [node for node in ids if node.startswith(name)] == _collected(name)             # its own order
