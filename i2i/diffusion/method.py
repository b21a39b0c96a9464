"""What a diffusion method gives the shared command and job loop: its config (options declared with
:func:`i2i.options.option`), its pipeline (a :class:`~i2i.diffusion.model.DiffusionModel` with ``run_job``), its
job schema and default seed. FreeControl, Ctrl-X and plain sampling each declare one :class:`DiffusionMethod`;
the ``i2i`` command builds one command per method from it (:mod:`i2i.cli.diffusion`). Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i2i.diffusion.jobs import JobSchema


# The most sampling steps: SD's DDIM schedule (1000 training steps, steps_offset 1) has timestep 1000 at 1000 steps,
# one past its last noise level.
MAX_STEPS = 999

# Names a method may not take: a model folder's i2i_demo.json is the demo model's training record, not settings.
RESERVED_NAMES = ("demo",)


@dataclass(frozen=True)
class DiffusionMethod:
    """One diffusion method. ``name``: its settings file (``i2i_<name>.json`` in a model folder) and model
    variable (``$I2I_<NAME>_MODEL``); ``config``: its frozen config dataclass, whose fields that hold dataclasses
    (FreeControl's ``bases``) take nested recommended settings; ``pipeline``: ``"module:Class"``, imported only
    when a model loads; ``shown``: the settings named in the start-up info line; ``summary`` / ``usage``: what it
    does and an example command, for its ``--help``."""

    name: str
    config: type
    pipeline: str
    jobs: JobSchema
    seed: int
    shown: tuple[str, ...] = ()
    summary: str = ""
    usage: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name) or self.name in RESERVED_NAMES:
            raise ValueError(f"diffusion method name {self.name!r}: lower-case letters, digits and underscores (it "
                             f"names i2i_<name>.json and $I2I_<NAME>_MODEL), not one of {', '.join(RESERVED_NAMES)}")

    @property
    def model_env(self) -> str:
        return f"I2I_{self.name.upper()}_MODEL"

    @property
    def nested(self) -> dict[str, type]:
        """Config fields that hold a dataclass (their recommended settings are a dict of its fields)."""
        return {f.name: type(f.default) for f in dataclasses.fields(self.config)
                if dataclasses.is_dataclass(f.default) and not isinstance(f.default, type)}

    def recommended(self, model: str | Path | None) -> dict[str, Any]:
        """``model``'s recommended settings for this method (``{}`` when it ships none); JSON lists become
        tuples (the configs are frozen)."""
        from i2i.diffusion.settings import read_recommended

        data = read_recommended(model, self.name, self.config, self.nested)
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if data:                                    # the file's own values must make a valid config
            from i2i.diffusion.settings import apply_recommended, settings_file
            from i2i.errors import CheckpointError, UsageError

            try:
                apply_recommended(self.config(), data, tuple(self.nested)).validate()
            except UsageError as exc:
                raise CheckpointError(f"{settings_file(model, self.name)}: a recommended setting is invalid: "
                                      f"{exc}") from exc
        return data

    def model_config(self, model: str | Path | None, recommended: dict[str, Any] | None = None) -> Any:
        """The defaults with ``model``'s recommended settings applied (pass ``recommended`` when already read)."""
        from i2i.diffusion.settings import apply_recommended

        settings = self.recommended(model) if recommended is None else recommended
        return apply_recommended(self.config(), settings, tuple(self.nested))

    def pipeline_class(self) -> type:
        module, name = self.pipeline.split(":")
        return getattr(importlib.import_module(module), name)

    def default_model(self, model: str | None = None) -> str:
        """``model`` if given, else ``$I2I_<NAME>_MODEL``, else the bundled demo model's folder."""
        if model:
            return model
        if os.environ.get(self.model_env):
            return os.environ[self.model_env]
        from i2i.demo.model import demo_model_path

        return str(demo_model_path())
