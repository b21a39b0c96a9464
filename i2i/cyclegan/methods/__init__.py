"""Training methods by name (``i2i cyclegan train --model NAME``): one module each, imported when chosen.

Adding a method: write a module with a :class:`~i2i.cyclegan.methods.base.Method` subclass (its own frozen
``Options`` dataclass declares its flags) and add one line to :data:`REGISTRY` (or call :func:`register`, e.g. from
a plugin or a test). ``i2i cyclegan train --model NAME --help`` then lists its flags.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Union

from i2i.errors import UsageError

if TYPE_CHECKING:
    from i2i.cyclegan.methods.base import Method

# name -> "module:Class" (imported when chosen) or the class itself
REGISTRY: dict[str, Union[str, "type[Method]"]] = {
    "cyclegan": "i2i.cyclegan.methods.cyclegan:CycleGAN",
    "cut": "i2i.cyclegan.methods.cut:CUT",
    "fastcut": "i2i.cyclegan.methods.cut:FastCUT",
}


def register(name: str, method: Union[str, "type[Method]"], replace: bool = False) -> None:
    """Make ``method`` (a Method subclass or ``"module:Class"``) trainable as ``--model name``. A name already
    registered (a built-in method, say) is replaced only with ``replace=True``."""
    if name in REGISTRY and not replace and REGISTRY[name] != method:
        raise UsageError(f"--model {name!r} is already registered; pass replace=True to replace it")
    REGISTRY[name] = method


def get_method(name: str) -> "type[Method]":
    """The :class:`Method` class registered as ``name``."""
    if name not in REGISTRY:
        raise UsageError(f"--model {name!r}: choose one of {', '.join(REGISTRY)}")
    target = REGISTRY[name]
    if not isinstance(target, str):
        return target
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
