"""Training methods by name (``i2i cyclegan train --model NAME``): one module each, imported when chosen.

Adding a method: write a module with a :class:`~i2i.cyclegan.methods.base.Method` subclass (its own frozen
``Options`` dataclass declares its flags) and add one line to :data:`REGISTRY` (or call :func:`register`, e.g. from
a plugin or a test). ``i2i cyclegan train --model NAME --help`` then lists its flags.
"""

from __future__ import annotations

import importlib
import re
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


# The train command's own flags, beside TrainConfig's declared ones: a method option may not take them either.
COMMAND_FLAGS = ("--model", "--run-dir", "--resume", "--overwrite", "--option", "--device", "--quiet", "--json",
                 "--debug", "--help")
NAME = re.compile(r"[a-z][a-z0-9_]*")


def register(name: str, method: Union[str, "type[Method]"], replace: bool = False) -> None:
    """Make ``method`` (a Method subclass or ``"module:Class"``) trainable as ``--model name`` (lower-case letters,
    digits and underscores: it also names run folders). A name already registered (a built-in method, say) is
    replaced only with ``replace=True``."""
    if not NAME.fullmatch(name):
        raise UsageError(f"--model {name!r}: a method name is lower-case letters, digits and underscores")
    if name in REGISTRY and not replace and REGISTRY[name] != method:
        raise UsageError(f"--model {name!r} is already registered; pass replace=True to replace it")
    REGISTRY[name] = method


def get_method(name: str) -> "type[Method]":
    """The :class:`Method` class registered as ``name``."""
    if name not in REGISTRY:
        raise UsageError(f"--model {name!r}: choose one of {', '.join(REGISTRY)}")
    target = REGISTRY[name]
    if isinstance(target, str):
        module, _, cls = target.partition(":")
        target = getattr(importlib.import_module(module), cls)
    _check_flags(name, target)
    return target


def _check_flags(name: str, method: "type[Method]") -> None:
    """A method option's flag must be its own: one that TrainConfig or the train command already has would set
    both at once, and the help would show only one of them."""
    from i2i.cyclegan.config import TrainConfig
    from i2i.options import declared

    taken = {name for d in declared(TrainConfig) for name in (d.flag, *d.spec.aliases)} | set(COMMAND_FLAGS)
    for d in declared(method.Options):
        clash = next((f for f in (d.flag, *d.spec.aliases) if f in taken), None)
        if clash is not None:
            raise UsageError(f"--model {name}: its option {'.'.join(d.path)} declares {clash}, a flag the train "
                             "command already has; give it another flag (option(..., flag=...))")


def _register_plugins() -> None:
    from i2i.plugins import register_training_plugins

    register_training_plugins()


_register_plugins()       # other packages' methods (entry points "i2i.training_methods"), imported when chosen
