"""Where the diffusion cache lives by default (no torch here: the CLI's help text reads it at start-up)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CACHE_DIR = "$I2I_CACHE_DIR/freecontrol, else $XDG_CACHE_HOME/i2i/freecontrol, else ~/.cache/i2i/freecontrol"


def default_cache_dir() -> Path:
    """The cache folder when none is given: :data:`DEFAULT_CACHE_DIR`."""
    if os.environ.get("I2I_CACHE_DIR"):
        return Path(os.environ["I2I_CACHE_DIR"]) / "freecontrol"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "i2i" / "freecontrol"
