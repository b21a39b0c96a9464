"""Options declared once: a config dataclass field carries its command-line flag, help text and help panel.

The CLI builds its flags from these declarations (:mod:`i2i.cli.options`), and library error messages take flag
names from them, so a renamed flag cannot leave a stale name behind. Nothing here imports Typer or torch.

Example::

    from dataclasses import dataclass
    from i2i.options import declared, flag, option

    @dataclass(frozen=True)
    class Sampling:
        steps: int = option(50, help="Denoising steps.", panel="Sampling")
        guidance: float = option(7.5, help="Classifier-free guidance scale.", flag="--cfg", aliases=("--scale",))
        scheduler: str = option("ddim", help="The sampler.", choices=("ddim", "euler"))
        cache_dir: str | None = None                       # not declared: no flag

        def __post_init__(self):
            if self.steps < 1:
                raise UsageError(f"{flag(Sampling, 'steps')} must be at least 1")   # "--steps must be ..."

    [d.path for d in declared(Sampling)]      # [("steps",), ("guidance",), ("scheduler",)]

A field whose default is a dataclass instance (``generator: GeneratorConfig = GeneratorConfig()``, or
``field(default_factory=GeneratorConfig)``) is nested:
:func:`declared` recurses into it and its flags set ``("generator", name)``. Two fields may declare the same flag
(e.g. ``--norm`` on the generator's and the discriminator's config): the CLI then has one flag that sets both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

META_KEY = "i2i.option"


@dataclass(frozen=True)
class OptionSpec:
    """How one config field appears on the command line."""

    help: str
    flag: str | None = None              # None: "--" + the field name with "-" for "_"
    aliases: tuple[str, ...] = ()        # more names for the same flag (e.g. the reference's --netG)
    panel: str | None = None             # the help panel it is listed in
    choices: tuple[str, ...] = ()        # shown in the help (the config's own check enforces them)
    metavar: str | None = None


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None,
           aliases: tuple[str, ...] = (), panel: str | None = None, choices: tuple[str, ...] = (),
           metavar: str | None = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its command-line declaration (see the module docstring)."""
    spec = OptionSpec(help=help, flag=flag, aliases=tuple(aliases), panel=panel, choices=tuple(choices),
                      metavar=metavar)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={META_KEY: spec})
    return dataclasses.field(default=default, metadata={META_KEY: spec})


def spec_of(f: dataclasses.Field) -> OptionSpec | None:
    """The declaration of a dataclass field, or None if it has no flag."""
    return f.metadata.get(META_KEY)


def flag_name(f: dataclasses.Field) -> str:
    spec = spec_of(f)
    return (spec.flag if spec and spec.flag else None) or "--" + f.name.replace("_", "-")


def flag(cls: Any, name: str) -> str:
    """The flag of field ``name`` of the dataclass ``cls`` (or of an instance): ``flag(TrainConfig, "lr")`` is
    ``"--lr"``; a field without a declaration gets ``--`` + its name with dashes."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return flag_name(f)
    raise KeyError(f"{getattr(cls, '__name__', cls)} has no field {name!r}")


@dataclass(frozen=True)
class Declared:
    """One declared field, ``path`` from the outer config (``("generator", "ngf")``)."""

    path: tuple[str, ...]
    field: dataclasses.Field
    spec: OptionSpec
    owner: type                          # the dataclass that declares it

    @property
    def flag(self) -> str:
        return flag_name(self.field)


def check_non_negative(config: Any, *names: str) -> None:
    """A :class:`~i2i.errors.UsageError` naming the flag when a field of ``config`` is negative, NaN or infinite
    (a NaN would pass a plain ``>= 0`` test's negation and read as "negative")."""
    import math

    from i2i.errors import UsageError

    for name in names:
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{flag(config, name)} must be a finite number, at least 0 (got {value})")


def declared(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[Declared]:
    """Every declared field of ``cls`` in field order, recursing into fields whose default (or default factory's
    value) is a dataclass instance."""
    for f in dataclasses.fields(cls):
        spec = spec_of(f)
        if spec is not None:
            yield Declared((*prefix, f.name), f, spec, cls)
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default) and not isinstance(default, type):
                yield from declared(type(default), (*prefix, f.name))


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of each field (string annotations evaluated)."""
    import sys
    import typing

    module = sys.modules.get(cls.__module__)
    return typing.get_type_hints(cls, vars(module) if module else None)


def value_at(obj: Any, path: tuple[str, ...]) -> Any:
    """``obj.generator.ngf`` for the path ``("generator", "ngf")``; dicts are read by key."""
    for name in path:
        obj = obj[name] if isinstance(obj, dict) else getattr(obj, name)
    return obj


def nest(values: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """``{("generator", "ngf"): 8, ("lr",): 0.1}`` -> ``{"generator": {"ngf": 8}, "lr": 0.1}``."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        node = out
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    return out
