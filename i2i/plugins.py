"""Methods from other packages, by entry point: a package that declares, in its ``pyproject.toml``::

    [project.entry-points."i2i.training_methods"]
    onesided = "mypackage.onesided:OneSided"          # a Method subclass (i2i.cyclegan.methods.base)

    [project.entry-points."i2i.diffusion_methods"]
    tinted = "mypackage.tinted:TINTED"                # a DiffusionMethod (i2i.diffusion.method)

gets ``i2i cyclegan train --model onesided`` and ``i2i tinted`` once it is installed, with their flags in ``--help``
as for the built-in methods. A training method is imported only when chosen; a diffusion method's declaration is
imported when the ``i2i`` command starts (keep that module light: its pipeline is named by a string). A plugin that
cannot be loaded or takes a name already used is skipped with a warning; the rest of the command works.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

TRAINING_GROUP = "i2i.training_methods"
DIFFUSION_GROUP = "i2i.diffusion_methods"


def _entry_points(group: str) -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=group), key=lambda ep: ep.name)


def register_training_plugins() -> None:
    """Add the installed training methods to :data:`i2i.cyclegan.methods.REGISTRY` (by ``"module:Class"``: nothing
    is imported until one is chosen)."""
    from i2i.cyclegan.methods import register
    from i2i.errors import UsageError

    for ep in _entry_points(TRAINING_GROUP):
        try:
            register(ep.name, ep.value)
        except UsageError as exc:
            warnings.warn(f"training method plugin {ep.name} ({ep.value}) skipped: {exc}", stacklevel=2)


def add_diffusion_plugins(app: "typer.Typer", taken: set[str]) -> None:
    """One command per installed diffusion method (its :class:`~i2i.diffusion.method.DiffusionMethod`), beside the
    commands named in ``taken``."""
    from i2i.cli.diffusion import diffusion_app
    from i2i.diffusion.method import DiffusionMethod

    for ep in _entry_points(DIFFUSION_GROUP):
        try:
            method = ep.load()
            if not isinstance(method, DiffusionMethod):
                raise TypeError(f"{ep.value} is a {type(method).__name__}, not a DiffusionMethod")
            if method.name in taken:
                raise ValueError(f"`i2i {method.name}` is already a command")
            app.add_typer(diffusion_app(method), name=method.name)
            taken.add(method.name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the command down
            warnings.warn(f"diffusion method plugin {ep.name} ({ep.value}) skipped: {exc}", stacklevel=2)
