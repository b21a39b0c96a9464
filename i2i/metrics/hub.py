"""Loading transformers models for scores from a local folder or a hub id, with one clear error offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from i2i.errors import CheckpointError


def looks_like_path(name: str) -> bool:
    """A local folder rather than a hub id (``owner/name``)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).expanduser().exists()


def load_pretrained(loader: Callable[..., Any], name: str, what: str, flag: str, **kwargs: Any) -> Any:
    """``loader(name, **kwargs)`` (a ``from_pretrained``); any failure becomes a CheckpointError that says what
    to download and how to pass it."""
    local = Path(name).expanduser()
    if looks_like_path(name) and not local.is_dir():
        raise CheckpointError(f"{what}: {name}: no such model folder (give a folder written by save_pretrained, "
                              f"or a hub id with {flag})")
    try:
        return loader(str(local) if local.is_dir() else name, **kwargs)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "" if local.is_dir() else (
            f" On a machine with internet: `hf download {name} --local-dir {name.split('/')[-1]}`, "
            f"copy the folder here and pass {flag} {name.split('/')[-1]} (or run once online to fill the hub "
            "cache).")
        raise CheckpointError(f"{what}: cannot load {name!r} ({reason}).{hint}") from exc
