"""On-disk cache of tensors (inversion trajectories, semantic bases): safetensors files written atomically, with
a format version and a checksum, named by a hash of everything that determines their content.

A file that cannot be parsed, has another format version, another key, or a wrong checksum is treated as a miss
(the caller rebuilds it and overwrites the bad entry); nothing is ever unpickled. An entry is built under a lock
(:func:`entry_lock`), so that processes asking for the same entry at once (a batch script's parallel jobs) build
it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import torch

from i2i.images import write_bytes_atomic

FORMAT_VERSION = "1"


def cache_key(fields: dict[str, Any]) -> str:
    """A stable hex digest of ``fields`` (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of ``tensors`` in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_entry(path: Path, tensors: dict[str, torch.Tensor], key: str, info: dict[str, Any]) -> Path:
    """Write ``tensors`` with their key, ``info`` (JSON) and checksum to ``path`` atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {"format_version": FORMAT_VERSION, "key": key, "info": json.dumps(info, default=str),
                "checksum": tensors_checksum(tensors)}
    return write_bytes_atomic(path, save(tensors, metadata=metadata), overwrite=True)


def store_entry(path: Path, tensors: dict[str, torch.Tensor], key: str, info: dict[str, Any],
                reporter=None) -> Path | None:
    """:func:`save_entry`, or, where the cache cannot be written (a read-only or full disk), a warning and None:
    the cache saves work on later runs; this run's result does not need it."""
    from i2i.errors import OutputError
    from i2i.progress import warn

    try:
        return save_entry(path, tensors, key, info)
    except (OutputError, OSError) as exc:
        warn(reporter, f"the cache cannot be written ({exc}); going on without it (--cache-dir picks another "
                       "folder)")
        return None


def read_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's bytes (ValueError if the header is malformed)."""
    if len(data) < 8:
        raise ValueError("file too short")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("header length past the end of the file")
    return json.loads(data[8:8 + n]).get("__metadata__") or {}


def load_entry(path: Path, key: str | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The tensors and info stored at ``path``, or None when it is missing, corrupt, of another format version,
    stored under another key (when ``key`` is given), or fails its checksum."""
    from safetensors.torch import load

    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
        meta = read_metadata(data)
        if meta.get("format_version") != FORMAT_VERSION or (key is not None and meta.get("key") != key):
            return None
        tensors = load(data)
        if tensors_checksum(tensors) != meta.get("checksum"):
            return None
        return tensors, json.loads(meta.get("info") or "{}")
    except Exception:  # any parse error means a corrupt entry: rebuild it
        return None


def entry_status(path: Path, key: str | None) -> str:
    """``"missing"``, ``"ok"`` or ``"corrupt"`` for the entry at ``path``."""
    if not path.exists():
        return "missing"
    return "ok" if load_entry(path, key) is not None else "corrupt"


@contextlib.contextmanager
def entry_lock(path: Path, reporter=None):
    """Hold an exclusive lock on the entry at ``path`` (the file ``<name>.lock`` beside it) while it is looked up
    and, on a miss, built: a second process asking for it meanwhile waits (saying so), then reads what the first
    stored. Without ``fcntl`` (Windows), or where the lock file cannot be made (a read-only cache), no lock is
    taken: each process builds the entry itself, as it would alone."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "a")
    except (ImportError, OSError):
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if reporter is not None:
                reporter.info(f"another process is building cache entry {path.name}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def progress_bar(reporter, total: int, description: str):
    """``reporter.progress(total, description)``, or a silent stand-in when there is no reporter."""
    if reporter is None:
        return contextlib.nullcontext(lambda n=1, **fields: None)
    return reporter.progress(total, description)
