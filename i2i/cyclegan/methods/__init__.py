"""Training methods by name (``i2i cyclegan train --model NAME``): one module each, imported when chosen.

Adding a method: write ``i2i/cyclegan/methods/<name>.py`` with a :class:`~i2i.cyclegan.methods.base.Method`
subclass and add one line to :data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from i2i.errors import UsageError

if TYPE_CHECKING:
    from i2i.cyclegan.config import TrainConfig
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


def default_config(model: str = "cyclegan", shapes: bool = False) -> "TrainConfig":
    """The starting config of ``model``: the reference defaults, then the method's own (``Method.defaults``,
    ``Method.options``), then for builtin:shapes the small shapes preset (and the method's ``shapes_preset``)."""
    from i2i.cyclegan.config import SHAPES_PRESET, TrainConfig

    cls = get_method(model)
    config = TrainConfig(model=model, options=dict(cls.options))
    for layer in (cls.defaults, _as_changes(SHAPES_PRESET) if shapes else {}, cls.shapes_preset if shapes else {}):
        config = merge_config(config, layer)
    return config


def _as_changes(preset: dict) -> dict:
    """A preset with its network configs reduced to the fields that differ from their defaults (so a method's
    own network defaults, e.g. CUT's anti-aliasing, survive)."""
    import dataclasses

    out = {}
    for name, value in preset.items():
        if dataclasses.is_dataclass(value):
            default = type(value)()
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                     if getattr(value, f.name) != getattr(default, f.name)}
        out[name] = value
    return out


def merge_config(config: "TrainConfig", fields: dict) -> "TrainConfig":
    """``config`` with ``fields`` replaced; ``generator``/``discriminator``/``options`` may be given as partial
    dicts (merged into the current value) or as whole configs."""
    import dataclasses

    merged = {}
    for name, value in fields.items():
        current = getattr(config, name)
        if isinstance(value, dict) and name == "options":
            value = {**current, **value}
        elif isinstance(value, dict):
            value = dataclasses.replace(current, **value)
        merged[name] = value
    return dataclasses.replace(config, **merged)
