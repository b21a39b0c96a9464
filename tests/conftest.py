import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Under pytest-xdist (pyproject's addopts) every worker gets its share of the cores, so that the workers' torch
# thread pools, and the CLI subprocesses they start, do not oversubscribe the machine.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores // _workers)))


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """The cache root (``I2I_CACHE_DIR``; the library's FreeControl cache is its ``freecontrol/``) of every test
    that runs the bundled demo model with its default settings, shared by the pytest-xdist workers of one run: a
    concept's semantic bases (about 30 s on one thread) and a condition's inversion are computed once per run, not
    once per test. The cache is safe for concurrent writers (tests/test_freecontrol_cache.py); the tests of the
    cache itself use folders of their own."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent                 # the run's folder, above each worker's own
    path = root / "demo-fc-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A CycleGAN run of 2 iterations on builtin:shapes with 8-channel networks (seconds), for the tests that need a
    checkpoint to translate or evaluate with."""
    from typer.testing import CliRunner

    from i2i.cli.app import app

    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    args = ["cyclegan", "train", "builtin:shapes", "--run-dir", str(run_dir), "--max-iters", "2", "--ngf", "8",
            "--ndf", "8", "--shapes-count", "8", "--batch-size", "2", "--num-workers", "0", "--quiet"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return run_dir


def pytest_collection_modifyitems(config, items):
    """The order in which pytest-xdist hands out its work units, test files (pyproject's addopts: ``--dist loadfile
    --no-loadscope-reorder``): files holding a test marked ``heavy`` (minutes on one thread) first, the rest in
    collection order, so that the run does not end with one worker busy on a long file it started last."""
    heavy = {item.path for item in items if item.get_closest_marker("heavy")}
    items.sort(key=lambda item: item.path not in heavy)          # stable
