"""A model folder's recommended settings per method (``i2i_<method>.json`` beside ``model_index.json``), e.g. the
small demo model's fewer steps. The library applies them, so Python callers and the CLI get the same defaults;
values given explicitly (flags, arguments) still win."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from i2i.errors import CheckpointError

C = TypeVar("C")


def settings_file(model: str | Path, method: str) -> Path:
    return Path(model) / f"i2i_{method}.json"


def read_recommended(model: str | Path | None, method: str, config_type: type, nested: dict[str, type] = {}
                     ) -> dict[str, Any]:
    """The recommended settings of ``model`` for ``method`` (``{}`` when ``model`` is not a local folder or ships
    none). Keys are ``config_type``'s field names; a key in ``nested`` holds a dict of that dataclass's fields."""
    if model is None:
        return {}
    path = settings_file(model, method)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable recommended settings ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected an object of settings, not {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(config_type)} - set(nested)
    bad = [k for k in data if k not in fields and k not in nested]
    for key, sub_type in nested.items():
        if not isinstance(data.get(key, {}), dict):
            raise CheckpointError(f"{path}: \"{key}\" must be an object of settings (got {json.dumps(data[key])})")
        sub_fields = {f.name for f in dataclasses.fields(sub_type)}
        bad += [f"{key}.{k}" for k in data.get(key, {}) if k not in sub_fields]
    if bad:
        raise CheckpointError(f"{path}: unknown setting(s) {', '.join(bad)}")
    for key in nested.keys() & data.keys():
        _check_types(path, data[key], nested[key], f"{key}.")
    _check_types(path, {k: v for k, v in data.items() if k not in nested}, config_type)
    return data


def _check_types(path: Path, values: dict[str, Any], config_type: type, prefix: str = "") -> None:
    """A :class:`CheckpointError` naming ``path`` for a value of the wrong JSON type for its field."""
    hints = typing.get_type_hints(config_type)
    for key, value in values.items():
        if not _accepts(hints[key], value):
            raise CheckpointError(f"{path}: \"{prefix}{key}\" must be of type {_describe(hints[key])} "
                                  f"(got {json.dumps(value)})")


def _accepts(hint: Any, value: Any) -> bool:
    """Whether the JSON value ``value`` fits the type ``hint`` (numbers: an int is a float, a bool is neither;
    a tuple is a JSON list); types this does not know are left to the config's validation."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool or hint is str:
        return isinstance(value, hint)
    if hint is int or hint is float:
        return isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
    if typing.get_origin(hint) is tuple:
        items = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return isinstance(value, list) and len(value) == len(items) and all(map(_accepts, items, value))
    return True


def _describe(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def apply_recommended(config: C, recommended: dict[str, Any], nested: tuple[str, ...] = ()) -> C:
    """``config`` with ``recommended`` applied (nested dataclass fields merged, not replaced)."""
    top = {k: v for k, v in recommended.items() if k not in nested}
    subs = {k: dataclasses.replace(getattr(config, k), **recommended[k]) for k in nested if k in recommended}
    return dataclasses.replace(config, **top, **subs)


def not_overridden(recommended: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``recommended`` without the settings that ``changes`` gives (a nested config's keys one by one): what the
    model still decides, as named in the settings line."""
    out: dict[str, Any] = {}
    for key, value in recommended.items():
        if isinstance(value, dict) and isinstance(changes.get(key), dict):
            rest = {k: v for k, v in value.items() if k not in changes[key]}
            if rest:
                out[key] = rest
        elif key not in changes:
            out[key] = value
    return out


def _lookup(root: Any, key: str, get: Any) -> Any:
    for part in key.split("."):
        root = get(root, part)
    return root


def describe(config: Any, recommended: dict[str, Any], keys: tuple[str, ...]) -> str:
    """One line naming the settings in use, e.g. ``steps 50, structure_weight 1200.0, bases.block 'up_blocks.2'
    (from the model's recommended settings: steps, structure_weight, bases.block)``. A dotted key names a field of a
    nested config; a value of None (the method picks it, e.g. by model family) reads ``default``."""
    def shown(key: str) -> str:
        value = _lookup(config, key, getattr)
        return f"{key} {'default' if value is None else repr(value) if isinstance(value, str) else value}"

    def given(key: str) -> bool:
        try:
            _lookup(recommended, key, lambda d, k: d[k])
        except (KeyError, TypeError):
            return False
        return True

    from_model = [k for k in keys if given(k)]
    text = ", ".join(shown(k) for k in keys)
    return text + (f" (from the model's recommended settings: {', '.join(from_model)})" if from_model else "")
