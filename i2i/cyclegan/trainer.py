"""Public training entry point: :func:`train` runs any registered method (``config.model``: cyclegan, cut,
fastcut) in the one loop of :mod:`i2i.cyclegan.loop`; :func:`run_config` builds the config the CLI would run."""

from __future__ import annotations

from i2i.cyclegan.loop import PeriodicHook, TrainResult, resume_command, train
from i2i.cyclegan.run_config import resolve_config, run_config, saved_config

__all__ = ["train", "run_config", "resolve_config", "resume_command", "saved_config", "TrainResult", "PeriodicHook"]
