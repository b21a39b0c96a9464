"""Training methods by name (``i2i cyclegan train --model NAME``): one module each, imported when chosen.

Adding a method: write ``i2i/cyclegan/methods/<name>.py`` with a :class:`~i2i.cyclegan.methods.base.Method`
subclass and add one line to :data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from i2i.errors import UsageError

if TYPE_CHECKING:
    from i2i.cyclegan.methods.base import Method

# name -> "module:Class"
REGISTRY: dict[str, str] = {
    "cyclegan": "i2i.cyclegan.methods.cyclegan:CycleGAN",
    "cut": "i2i.cyclegan.methods.cut:CUT",
    "fastcut": "i2i.cyclegan.methods.cut:FastCUT",
}


def get_method(name: str) -> "type[Method]":
    """The :class:`Method` class registered as ``name``."""
    if name not in REGISTRY:
        raise UsageError(f"--model {name!r}: choose one of {', '.join(REGISTRY)}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)
