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
    to download and how to pass it. A hub id is looked up in the local cache first (:mod:`i2i.hub`): found, it
    loads with no network access; missing while offline or without a network, the error comes at once."""
    from i2i.hub import download_hint, require_weights

    local = Path(name).expanduser()
    if looks_like_path(name) and not local.is_dir():
        raise CheckpointError(f"{what}: {name}: no such model folder (give a folder written by save_pretrained, "
                              f"or a hub id with {flag})")
    if not local.is_dir() and require_weights(name, "config.json", what, download_hint(name, flag)):
        kwargs = {**kwargs, "local_files_only": True}
    try:
        return loader(str(local) if local.is_dir() else name, **kwargs)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "" if local.is_dir() else " " + download_hint(name, flag)
        raise CheckpointError(f"{what}: cannot load {name!r} ({reason}).{hint}") from exc
