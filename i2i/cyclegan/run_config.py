"""The one place a training config is assembled, as ``i2i cyclegan train`` builds it: the reference defaults
(:class:`~i2i.cyclegan.config.TrainConfig`), the method's own (``Method.defaults``, ``Method.Options``), for
builtin:shapes the shapes preset (``config.SHAPES_PRESET`` and ``Method.shapes_preset``) or, on resume, the run's
saved config; then the caller's changes.

Python callers get the CLI's defaults, run folder naming and resume rules from :func:`run_config` (to continue a
run, pass ``resume=True`` both to it and to :func:`i2i.cyclegan.trainer.train`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

from i2i.cyclegan import run_aside
from i2i.cyclegan.config import DEFAULT_MODEL, RESUMABLE_FIELDS, SHAPES_PRESET, TrainConfig
from i2i.cyclegan.methods import get_method
from i2i.errors import CheckpointError, InputError, UsageError
from i2i.options import flag

NESTED = ("generator", "discriminator", "options")


def default_run_dir(dataroot: str, model: str = DEFAULT_MODEL) -> str:
    """``runs/<the dataset folder's name>`` (``shapes`` for builtin:shapes), with ``-<model>`` for any method but
    CycleGAN, so that runs of two methods on one dataset do not meet in one folder."""
    from i2i.cyclegan.data import BUILTIN_SHAPES

    name = "shapes" if dataroot == BUILTIN_SHAPES else (Path(dataroot).name or "cyclegan")
    return f"runs/{name}" if model == DEFAULT_MODEL else f"runs/{name}-{model}"


def run_config(dataroot: str | None = None, run_dir: str | None = None, model: str | None = None,
               resume: bool = False, option_pairs: list[str] | tuple[str, ...] = (), **changes: Any) -> TrainConfig:
    """The config ``i2i cyclegan train DATAROOT --model MODEL [flags]`` runs.

    A new run starts from ``model``'s defaults (config.DEFAULT_MODEL if None; the shapes preset when ``dataroot`` is
    builtin:shapes, the default). With ``resume`` the run's ``config.json`` is the start, ``dataroot`` may only
    name the recorded dataset and only RESUMABLE_FIELDS may change. ``changes`` are TrainConfig fields;
    ``generator``, ``discriminator`` and ``options`` may be partial dicts. ``option_pairs``: ``NAME=VALUE``
    texts (``--option``) read by :func:`parse_options` for the run's method; ``options`` win over them.
    """
    from i2i.cyclegan.data import BUILTIN_SHAPES

    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise UsageError(f"unknown setting(s) {', '.join(unknown)} (the fields of i2i.cyclegan.config.TrainConfig; "
                         "the device is train()'s argument)")
    dataroot, run_dir = (os.fspath(p) if p is not None else None for p in (dataroot, run_dir))
    changes = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in changes.items()}
    if resume and run_dir is None:
        raise UsageError("--resume needs --run-dir (the run folder to continue)")
    if dataroot is not None and not dataroot.strip():
        raise UsageError("DATAROOT is empty (an unset shell variable?): give a dataset folder or builtin:shapes")
    data = dataroot or BUILTIN_SHAPES
    given = {"run_dir": run_dir or default_run_dir(data, model or DEFAULT_MODEL), **changes}
    if model is not None:
        given["model"] = model
    if dataroot is not None or not resume:       # recorded absolute, so that a resume works from any folder
        given["dataroot"] = data if data.startswith("builtin:") else os.path.abspath(data)
    if resume and (said := run_aside.recover(given["run_dir"])) is not None:   # before its config is read
        warnings.warn(said, stacklevel=2)
    base = saved_config(given["run_dir"]) if resume else None
    base = base or default_config(model or DEFAULT_MODEL, shapes=data == BUILTIN_SHAPES)
    if option_pairs:
        pairs, flags = parse_options(model or base.model, list(option_pairs)), given.get("options", {})
        clash = sorted(k for k in set(pairs) & set(flags) if pairs[k] != flags[k])
        if clash:
            raise UsageError(f"--option {clash[0]}={pairs[clash[0]]} and the flag's {flags[clash[0]]} disagree: give "
                             "one of them")
        given["options"] = {**pairs, **flags}
    given = {k: v for k, v in given.items() if not (k in NESTED and not v)}
    config = resolve_config(merge_config(base, given), resume, set(given))
    options = get_method(config.model).options_from(config.options)   # an unknown method or option fails here
    return dataclasses.replace(config, options=dataclasses.asdict(options))     # typed as the flags type them


def default_config(model: str = DEFAULT_MODEL, shapes: bool = False) -> TrainConfig:
    """The starting config of ``model``: the reference defaults, then the method's own (``Method.defaults``,
    ``Method.Options``), then for builtin:shapes the small shapes preset (and the method's ``shapes_preset``)."""
    cls = get_method(model)
    config = TrainConfig(model=model, options=cls.default_options())
    for layer in ({k: v for k, v in cls.defaults.items() if k != "options"},
                  _as_changes(SHAPES_PRESET) if shapes else {}, cls.shapes_preset if shapes else {}):
        config = merge_config(config, layer)
    return config


def _as_changes(preset: dict) -> dict:
    """A preset with its network configs reduced to the fields that differ from their defaults (so a method's
    own network defaults, e.g. CUT's anti-aliasing, survive)."""
    out = {}
    for name, value in preset.items():
        if dataclasses.is_dataclass(value):
            default = type(value)()
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                     if getattr(value, f.name) != getattr(default, f.name)}
        out[name] = value
    return out


def merge_config(config: TrainConfig, fields: dict) -> TrainConfig:
    """``config`` with ``fields`` replaced; ``generator``/``discriminator``/``options`` may be given as partial
    dicts (merged into the current value) or as whole configs."""
    merged = {}
    for name, value in fields.items():
        current = getattr(config, name)
        if isinstance(value, dict) and name == "options":
            value = {**current, **value}
        elif isinstance(value, dict):
            unknown = sorted(set(value) - {f.name for f in dataclasses.fields(current)})
            if unknown:
                raise UsageError(f"{name}: unknown setting(s) {', '.join(unknown)} (the fields of "
                                 f"{type(current).__name__})")
            value = dataclasses.replace(current, **value)
        merged[name] = value
    return dataclasses.replace(config, **merged)


def resolve_config(config: TrainConfig, resume: bool, overrides: set[str]) -> TrainConfig:
    """On resume, the run's saved config wins; only RESUMABLE_FIELDS given in ``overrides`` may change.

    ``dataroot`` may be given again only if it names the recorded dataset.
    """
    if not resume:
        return config
    saved = saved_config(config.run_dir)
    if saved is None:
        raise CheckpointError(f"{config.run_dir}: nothing to resume (no config.json); drop --resume to start")
    builtin = saved.dataroot.startswith("builtin:")
    moved = not builtin and not Path(saved.dataroot).is_dir()
    if "dataroot" in overrides and not _same_dataroot(config.dataroot, saved.dataroot) and not moved:
        raise UsageError(f"DATAROOT {config.dataroot} differs from the run's recorded {saved.dataroot}; "
                         f"omit DATAROOT to resume on the recorded dataset")
    if moved and "dataroot" not in overrides:
        raise InputError(f"{saved.dataroot}: the run's dataset is not there (moved, or the run was started from "
                         "another folder): give DATAROOT, where it is now")
    # a moved dataset is taken where it is now (its size is checked against the checkpoint when resuming)
    changed = {name for name in overrides - {"dataroot"} if getattr(config, name) != getattr(saved, name)}
    refused = sorted(changed - RESUMABLE_FIELDS)
    if refused:
        raise UsageError("cannot change " + ", ".join(f for n in refused for f in _flags(config, saved, n))
                         + " when resuming (they are fixed by the run's config.json)")
    taken = changed | ({"dataroot"} if moved else set())
    return dataclasses.replace(saved, **{name: getattr(config, name) for name in taken})


def _flags(config: TrainConfig, saved: TrainConfig, name: str) -> list[str]:
    """The flags of field ``name`` that differ between ``config`` and ``saved``: the field's own, for a nested
    config (the generator's, the discriminator's) those of its changed fields (``--ngf``, ``--net-g``), for the
    method's options ``--option NAME`` of each changed one."""
    new, old = getattr(config, name), getattr(saved, name)
    if dataclasses.is_dataclass(new) and dataclasses.is_dataclass(old):
        return [flag(new, f.name) for f in dataclasses.fields(new) if getattr(new, f.name) != getattr(old, f.name)]
    if isinstance(new, dict) and isinstance(old, dict):      # the method's options: their flag and --option form
        from i2i.cyclegan.methods import get_method

        known = {f.name for f in dataclasses.fields(get_method(saved.model).Options)}
        return [f"{flag(get_method(saved.model).Options, k)} (--option {k})" if k in known else f"--option {k}"
                for k in sorted(set(new) | set(old)) if new.get(k) != old.get(k)]
    return [flag(TrainConfig, name)]


def saved_config(run_dir: str | Path) -> TrainConfig | None:
    """The config recorded in ``run_dir/config.json``, or None if there is none."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return None
    try:
        return TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, UsageError) as exc:
        raise CheckpointError(f"{path}: unreadable run config ({exc})") from exc


def _same_dataroot(a: str, b: str) -> bool:
    if a == b:
        return True
    return ":" not in a[:10] and ":" not in b[:10] and Path(a).resolve() == Path(b).resolve()


def parse_options(model: str, pairs: list[str]) -> dict[str, Any]:
    """``--option NAME=VALUE`` pairs as method options, each VALUE read as the type of the option's default
    (so a new method's options need no CLI flags of their own)."""
    defaults = get_method(model).default_options()
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not sep or not name:
            raise UsageError(f"--option {pair!r}: write NAME=VALUE, e.g. --option lambda_nce=4")
        if name not in defaults:
            raise UsageError(f"--option {name}: not an option of --model {model} (its options: "
                             f"{', '.join(sorted(defaults))})")
        out[name] = _parse_value(name, text.strip(), defaults[name])
    return out


def _parse_value(name: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes", "on")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a number"}[type(default)]
        raise UsageError(f"--option {name}={text}: expected {kind} (default {default!r})") from None
    return text
