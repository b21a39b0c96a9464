"""Plain text-to-image sampling (classifier-free guidance, DDIM) on the shared diffusion core: ``i2i generate``, and
the baseline that FreeControl's and Ctrl-X's costs are divided by.

``from i2i.generate import GeneratePipeline`` imports torch and diffusers only when the pipeline is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["GenerateConfig", "GenerateOutput", "GeneratePipeline"]
_HOME = {"GenerateConfig": "config", "GenerateOutput": "pipeline", "GeneratePipeline": "pipeline"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"i2i.generate.{_HOME[name]}"), name)
