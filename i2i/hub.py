"""Whether a model named by its hub id is on this machine, found out before any library looks for it on the network.

Without this, a missing model costs the user the hub client's retries (about 25 s without a network) and ends in
an ``OSError`` that does not say what to do. Here: a model in the local Hugging Face cache is loaded from it with
no network access; one that is not there fails at once with :class:`~i2i.errors.CheckpointError` (exit 4) when
``HF_HUB_OFFLINE`` is set or the hub cannot be reached (one connection attempt, a few seconds at most), and is
downloaded as usual otherwise.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from i2i.errors import CheckpointError

PROBE_TIMEOUT_S = 3.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")


def offline() -> bool:
    """``HF_HUB_OFFLINE`` is set: nothing may be fetched from the hub."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def cached_file(repo_id: str, filename: str) -> Path | None:
    """``filename`` of ``repo_id``'s newest snapshot in the local Hugging Face cache, or None (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:                   # an invalid repo id, an unreadable cache
        return None
    return Path(found) if isinstance(found, str) else None


def hub_host() -> str:
    from huggingface_hub import constants

    return urlparse(constants.ENDPOINT).hostname or constants.ENDPOINT


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to the hub endpoint (``HF_ENDPOINT``), no retries. Behind a proxy (``HTTPS_PROXY`` and
    the like) the direct connection proves nothing, so the hub is taken as reachable."""
    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return True
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def require_weights(repo_id: str, marker: str, what: str, todo: str) -> bool:
    """Whether ``repo_id`` is in the local cache (its ``marker`` file, e.g. ``config.json``): True means load it
    with ``local_files_only``. False means it is not cached but may be downloaded. Raises CheckpointError at once
    when it is not cached and cannot be downloaded (offline, or the hub unreachable); ``todo`` says what to do
    instead (e.g. which flag takes a local folder)."""
    if cached_file(repo_id, marker) is not None:
        return True
    if offline():
        why = "HF_HUB_OFFLINE is set"
    elif not hub_reachable():
        why = f"{hub_host()} cannot be reached"
    else:
        return False
    raise CheckpointError(f"{what}: the weights of {repo_id!r} are not on this machine (not a local folder, not in "
                          f"the Hugging Face cache {cache_dir()}) and {why}. {todo}")


def download_hint(repo_id: str, flag: str) -> str:
    """What a user without the weights does: download them elsewhere and pass the folder with ``flag``."""
    name = repo_id.rstrip("/").split("/")[-1]
    return (f"On a machine with internet: `hf download {repo_id} --local-dir {name}`, copy the folder here and pass "
            f"{flag} {name} (or run once online to fill the cache).")
