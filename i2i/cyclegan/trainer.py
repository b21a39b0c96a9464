"""Public training entry point (kept for existing callers): :func:`train` runs any registered method
(``config.model``: cyclegan, cut, fastcut) in the one loop of :mod:`i2i.cyclegan.loop`."""

from __future__ import annotations

from i2i.cyclegan.loop import PeriodicHook, TrainResult, resume_command, train
from i2i.cyclegan.methods.base import lr_lambda, make_adam
from i2i.cyclegan.methods.cyclegan import CycleGAN, DiscriminatorPair, GeneratorPair
from i2i.cyclegan.run_config import resolve_config, run_config, saved_config

LOSS_NAMES = CycleGAN.loss_names

__all__ = ["train", "run_config", "resolve_config", "resume_command", "saved_config", "TrainResult", "PeriodicHook", "LOSS_NAMES", "GeneratorPair",
           "DiscriminatorPair", "make_adam", "lr_lambda"]
