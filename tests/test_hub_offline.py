"""A model named by hub id that is not on this machine fails at once with what to do (no retries, no bare
OSError), offline or with the hub unreachable; one in the local cache loads with no network access."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.errors import CheckpointError
from i2i.hub import cached_file, require_weights

UNREACHABLE = "http://127.0.0.1:9"        # the discard port: nothing listens, the connection is refused at once


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "hub"


def fake_snapshot(cache, repo_id: str, marker: str) -> None:
    """The layout huggingface_hub writes: refs/main names the snapshot that holds the files."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / marker).write_text("{}")


def test_offline_and_not_cached_fails_at_once(empty_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="not on this machine.*HF_HUB_OFFLINE is set. DO THIS"):
        require_weights("someone/model", "config.json", "the model", "DO THIS")


def test_unreachable_hub_fails_at_once_without_retries(empty_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="127.0.0.1 cannot be reached"):
        require_weights("someone/model", "config.json", "the model", "")
    assert time.perf_counter() - start < 5


def test_cached_model_loads_without_the_network(empty_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    fake_snapshot(empty_cache, "someone/model", "config.json")
    assert require_weights("someone/model", "config.json", "the model", "") is True
    assert cached_file("someone/model", "model_index.json") is None


@pytest.mark.parametrize("command", ["score", "freecontrol"])
def test_cli_says_what_to_do_when_the_hub_is_unreachable(empty_cache, monkeypatch, tmp_path, command):
    from huggingface_hub import constants

    from i2i.shapes import ShapeSpec, render

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)
    image = tmp_path / "c.png"
    render(ShapeSpec("square", "red", 0.5, 0.5, 0.3), 32).save(image)
    args = {"score": ["score", str(image), "--condition", str(image)],
            "freecontrol": ["freecontrol", "--prompt", "a cat", "--condition", str(image), "--model",
                            "someone/sd-model", "--out", str(tmp_path / "out")]}[command]
    start = time.perf_counter()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 4, res.output
    assert "not on this machine" in res.stderr and "hf download" in res.stderr and "Retry" not in res.output
    assert time.perf_counter() - start < 60          # (imports included; the retries alone took 25 s)
