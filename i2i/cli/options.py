"""Typer flags built from declared config fields (:mod:`i2i.options`), with the defaults that will run.

A command lists the config dataclasses it takes flags from (``sources``) and says what runs when a flag is not
given (``defaults``); both are functions of the command line, so ``--model NAME --help`` can list that model's own
flags and show its defaults. The flags keep Typer's rich look: help panels, ``--x/--no-x`` for bools, choices as
the metavar, and ``[default: ...]`` computed when the help is shown (never hand-written).

Example::

    from i2i.cli.options import Defaults, Source, declared_command, given_changes, peek_option

    def sources(args):                 # args: the command line after the command's name
        return [Source(SamplingConfig)]

    def defaults(args):                # None: show no defaults
        model = peek_option(args, "--model")
        recommended = recommended_settings(model) if model else {}
        return Defaults(values=SamplingConfig(**recommended), usual=SamplingConfig(), note="from the model")

    @app.command(cls=declared_command(sources, defaults))
    def generate(ctx: typer.Context, model: Annotated[Optional[str], typer.Option("--model")] = None) -> None:
        changes = given_changes(ctx)   # only the flags given: {"steps": 20, "generator": {"ngf": 8}, ...}
        config = dataclasses.replace(SamplingConfig(**recommended), **changes)

Every declared field becomes an optional flag whose value is None when not given (so ``given_changes`` holds
exactly what the user typed). Validation stays in the config (its ``__post_init__``), so a Python caller gets the
same errors, with flag names from :func:`i2i.options.flag`.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperOption

from i2i.options import Declared, declared, field_types, nest, value_at

PARAMS_KEY, ARGS_KEY, CHANGES_KEY = "i2i.declared_params", "i2i.args", "i2i.changes"


@dataclass(frozen=True)
class Source:
    """Flags from the declared fields of ``cls``; their values go to ``prefix + path`` (e.g. ``("options",)``)."""

    cls: type
    prefix: tuple[str, ...] = ()
    panel: str | None = None             # the panel of fields that declare none
    skip: tuple[str, ...] = ()           # fields of ``cls`` this command has no flag for ("bases.seed")


@dataclass(frozen=True)
class Defaults:
    """What runs when a flag is not given: ``values`` (a config, or nested dicts, read at each flag's path). Where
    ``usual`` (the plain defaults) differs, the help says ``<value> <note>; <usual value> <usual_label>``."""

    values: Any
    usual: Any = None
    note: str = "from the preset"
    usual_label: str = "otherwise"


SourcesFn = Callable[[list[str]], list[Source]]
DefaultsFn = Callable[[list[str]], Optional[Defaults]]


def peek_option(args: list[str], *names: str) -> str | None:
    """The value of option ``names`` in a raw command line (``--model x`` or ``--model=x``; the last wins), read
    before Click parses it."""
    value = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        name, eq, text = arg.partition("=")
        if name in names:
            value = text if eq else (args[i + 1] if i + 1 < len(args) else None)
    return value


class ShownDefaultOption(TyperOption):
    """A Typer option whose ``[default: ...]`` text is set when the help is rendered (no parentheses added)."""

    def _get_default_string(self, *, ctx: Any, show_default_is_str: bool, default_value: Any) -> str:
        if isinstance(self.show_default, str):
            return self.show_default
        return super()._get_default_string(ctx=ctx, show_default_is_str=show_default_is_str,
                                           default_value=default_value)


@dataclass
class _Flag:
    """One command-line flag and the config paths it sets (several when two configs declare the same flag)."""

    decl: Declared
    paths: list[tuple[str, ...]]
    type: Any
    param: Any = None


def _flags(sources: list[Source]) -> list[_Flag]:
    by_flag: dict[str, _Flag] = {}
    for source in sources:
        for d in declared(source.cls):
            if ".".join(d.path) in source.skip:
                continue
            path = (*source.prefix, *d.path)
            if d.flag in by_flag:
                by_flag[d.flag].paths.append(path)
                continue
            kind = field_types(d.owner)[d.field.name]
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
                kind = args[0]
            if source.panel and not d.spec.panel:
                d = dataclasses.replace(d, spec=dataclasses.replace(d.spec, panel=source.panel))
            by_flag[d.flag] = _Flag(d, [path], kind)
    return list(by_flag.values())


def _param_name(flag: str) -> str:
    return "opt_" + flag.lstrip("-").replace("-", "_").lower()


def _typer_params(flags: list[_Flag]) -> list[Any]:
    """Typer builds the click options (so they look like every other flag): from a generated signature."""
    parameters = []
    for f in flags:
        spec, names = f.decl.spec, [f.decl.flag, *f.decl.spec.aliases]
        if f.type is bool:
            names = [f"{n}/--no-{n[2:]}" for n in names]
        metavar = spec.metavar or ("[" + "|".join(spec.choices) + "]" if spec.choices else None)
        info = typer.Option(*names, help=spec.help, rich_help_panel=spec.panel, metavar=metavar,
                            show_default=False)
        parameters.append(inspect.Parameter(_param_name(f.decl.flag), inspect.Parameter.KEYWORD_ONLY,
                                            default=None, annotation=Annotated[Optional[f.type], info]))

    def declared_flags(**_: Any) -> None:
        """Generated: Typer reads only the signature."""

    declared_flags.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    scratch = typer.Typer(add_completion=False)
    scratch.command()(declared_flags)
    params = typer.main.get_command(scratch).params
    for f, param in zip(flags, params):
        param.__class__ = ShownDefaultOption
        if f.type is bool:
            param.metavar = ""                      # a flag takes no value: no value column in the help
        f.param = param
    return params


def _format(value: Any, f: _Flag) -> str:
    if f.type is bool:
        return f.decl.flag if value else "--no-" + f.decl.flag[2:]
    if value == "":
        return '""'                                 # an empty text, not "none" (which reads as None)
    return "none" if value is None else str(value)


def shown_default(f: _Flag, defaults: Defaults) -> str | None:
    """The help's default text of one flag: the value that runs (each path's, when they differ), and the plain
    default where the preset/model changed it."""
    def text(obj: Any) -> str | None:
        try:
            values = [value_at(obj, p) for p in f.paths]
        except (KeyError, AttributeError, TypeError):      # a path this source of defaults does not know
            return None
        if all(v == values[0] for v in values):
            return None if values[0] is None else _format(values[0], f)
        return ", ".join(f"{p[-2] if len(p) > 1 else p[-1]}: {_format(v, f)}" for p, v in zip(f.paths, values))

    shown = text(defaults.values)
    usual = text(defaults.usual) if defaults.usual is not None else shown
    if usual == shown:
        return shown
    return f"{shown or 'none'} {defaults.note}; {usual or 'none'} {defaults.usual_label}"


class DeclaredCommand(TyperCommand):
    """A Typer command with extra flags built from declared config fields (see the module docstring)."""

    sources: SourcesFn = staticmethod(lambda args: [])  # type: ignore[assignment]
    defaults: DefaultsFn | None = None

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta[ARGS_KEY] = list(args)
        return super().parse_args(ctx, args)

    def declared_flags(self, ctx: Any) -> list[_Flag]:
        """The flags for this command line, built once per command and line: ``ctx.meta`` is shared along a command
        chain, and a subcommand's help asks its group for its flags too (``freecontrol bases --help``)."""
        key = (id(self), tuple(ctx.meta.get(ARGS_KEY, [])))
        cache = ctx.meta.setdefault(PARAMS_KEY, {})
        if key not in cache:
            flags = _flags(type(self).sources(list(key[1])))
            _typer_params(flags)
            cache[key] = flags
        return cache[key]

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        help_option = self.get_help_option(ctx)
        head = [p for p in params if p is not help_option]
        return [*head, *(f.param for f in self.declared_flags(ctx)), *([help_option] if help_option else [])]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        defaults_fn = type(self).defaults
        defaults = defaults_fn(ctx.meta.get(ARGS_KEY, [])) if defaults_fn else None
        for f in self.declared_flags(ctx):
            f.param.show_default = (shown_default(f, defaults) or False) if defaults else False
        super().format_help(ctx, formatter)

    def invoke(self, ctx: Any) -> Any:
        changes = {}
        for f in self.declared_flags(ctx):
            value = ctx.params.pop(f.param.name, None)
            if value is not None:
                changes.update({path: value for path in f.paths})
        ctx.meta[CHANGES_KEY] = nest(changes)
        return super().invoke(ctx)


def declared_command(sources: SourcesFn, defaults: DefaultsFn | None = None) -> type[DeclaredCommand]:
    """A command class for ``app.command(cls=...)`` with the flags of ``sources(args)``; ``defaults(args)`` gives
    the values the help shows (None: no defaults shown)."""
    return type("DeclaredCommand", (DeclaredCommand,), {"sources": staticmethod(sources),
                                                         "defaults": staticmethod(defaults) if defaults else None})


def given_changes(ctx: Any) -> dict[str, Any]:
    """The declared flags the user gave, as nested field changes (``{"lr": 0.1, "generator": {"ngf": 8}}``)."""
    return dict(ctx.meta.get(CHANGES_KEY, {}))
