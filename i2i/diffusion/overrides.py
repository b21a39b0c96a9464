"""Settings given as text, ``METHOD.KEY=VALUE`` (``ctrlx.structure_schedule=0.4``, ``freecontrol.bases.n_components=16``
for a nested config), for runs that override a model folder's recommended settings, e.g. while tuning them. Each key
is a field of the method's config dataclass and its value is typed by that field's annotation. Nothing here imports
torch.

Example::

    from i2i.ctrlx.config import CTRLX
    from i2i.diffusion.overrides import apply_overrides, parse_overrides

    overrides = parse_overrides(["ctrlx.structure_schedule=0.4"], {"ctrlx": CTRLX})
    config = apply_overrides(CTRLX.model_config(model_folder), overrides["ctrlx"], CTRLX)
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from i2i.diffusion.method import DiffusionMethod
from i2i.errors import UsageError
from i2i.options import field_types, nest

EXAMPLE = "ctrlx.structure_schedule=0.4"
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def setting_types(method: DiffusionMethod) -> dict[str, Any]:
    """Every key ``method``'s config takes (``"bases.n_components"`` for a nested config's field) and its type."""
    nested = method.nested
    out: dict[str, Any] = {}
    for name, kind in field_types(method.config).items():
        if name in nested:
            out.update({f"{name}.{key}": sub for key, sub in field_types(nested[name]).items()})
        else:
            out[name] = kind
    return out


def _describe(kind: Any) -> str:
    """What a value of ``kind`` is written as, for error messages."""
    args = typing.get_args(kind)
    if type(None) in args:
        return " or ".join(_describe(a) for a in args if a is not type(None)) + " or none"
    if typing.get_origin(kind) is tuple:
        return f"{len(args)} comma-separated values ({', '.join(_describe(a) for a in args)})"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(kind, str(kind))


def _parse(text: str, kind: Any) -> Any:
    args = typing.get_args(kind)
    if type(None) in args:
        if text.strip().lower() == "none":
            return None
        (kind,) = [a for a in args if a is not type(None)]
        args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:
        parts = text.split(",")
        if len(parts) != len(args):
            raise ValueError
        return tuple(_parse(p.strip(), a) for p, a in zip(parts, args))
    if kind is bool and text.strip().lower() in _TRUE + _FALSE:
        return text.strip().lower() in _TRUE
    if kind in (int, float):
        value = kind(text)                       # int("0.5") and float("x") raise ValueError
        if not math.isfinite(value):
            raise ValueError
        return value
    if kind is str:
        return text
    raise ValueError


def parse_value(text: str, kind: Any) -> Any:
    """``text`` as a value of the annotation ``kind`` (int, float, bool, str, a tuple of them, or one of them or
    None, written ``none``); a ``ValueError`` names what ``kind`` takes."""
    try:
        return _parse(text, kind)
    except ValueError:
        raise ValueError(f"takes {_describe(kind)}, not {text!r}") from None


def _split(text: str, methods: Mapping[str, DiffusionMethod]) -> tuple[str, str, str]:
    target, sep, raw = text.partition("=")
    name, dot, key = target.strip().partition(".")
    if not sep or not dot or not key:
        raise UsageError(f"--set {text!r}: write METHOD.KEY=VALUE, e.g. {EXAMPLE}")
    if name not in methods:
        raise UsageError(f"--set {text}: {name!r} is not a method of this run (choose from {', '.join(methods)})")
    return name, key.strip(), raw


def parse_overrides(texts: Iterable[str], methods: Mapping[str, DiffusionMethod]) -> dict[str, dict[str, Any]]:
    """``METHOD.KEY=VALUE`` texts as each method's settings (``{"ctrlx": {"structure_schedule": 0.4}}``, nested
    configs as dicts: the shape of a model folder's ``i2i_<method>.json``). ``methods``: the methods that may be
    set, by name. A malformed text, an unknown method or key, a key given twice or a value of the wrong type is a
    :class:`~i2i.errors.UsageError` (an unknown key's names every valid one)."""
    flat: dict[str, dict[tuple[str, ...], Any]] = {}
    for text in texts:
        name, key, raw = _split(text, methods)
        types = setting_types(methods[name])
        if key not in types:
            raise UsageError(f"--set {text}: {name} has no setting {key!r}; valid keys: {', '.join(sorted(types))}")
        path = tuple(key.split("."))
        if path in flat.setdefault(name, {}):
            raise UsageError(f"--set {name}.{key} is given twice")
        try:
            flat[name][path] = parse_value(raw, types[key])
        except ValueError as exc:
            raise UsageError(f"--set {text}: {key} {exc}") from None
    return {name: nest(values) for name, values in flat.items() if values}


def apply_overrides(config: Any, overrides: Mapping[str, Any], method: DiffusionMethod) -> Any:
    """``config`` with ``overrides`` (one method's, from :func:`parse_overrides`) applied, nested configs merged,
    and validated: a value the method refuses (out of range...) is a :class:`~i2i.errors.UsageError`."""
    from i2i.diffusion.settings import apply_recommended

    try:
        return apply_recommended(config, dict(overrides), tuple(method.nested)).validate()
    except UsageError as exc:
        raise UsageError(f"--set {describe_overrides({method.name: overrides})}: {exc}") from None


def describe_overrides(overrides: Mapping[str, Mapping[str, Any]]) -> str:
    """``"ctrlx.structure_schedule=0.4, freecontrol.bases.n_components=16"`` (empty when there are none)."""
    def flat(prefix: str, values: Mapping[str, Any]) -> list[str]:
        out: list[str] = []
        for key, value in values.items():
            if isinstance(value, Mapping):
                out += flat(f"{prefix}{key}.", value)
            else:
                shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
                out.append(f"{prefix}{key}={'none' if value is None else shown}")
        return out

    return ", ".join(item for name in sorted(overrides) for item in flat(f"{name}.", overrides[name]))
