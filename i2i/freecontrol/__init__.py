"""FreeControl (Mo et al., CVPR 2024): training-free spatial control of a text-to-image diffusion model.

Heavy imports (torch, diffusers) happen when the submodules are imported, not here: ``from i2i.freecontrol
import FreeControlPipeline`` loads them lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BasesConfig", "FreeControlConfig", "FreeControlOutput", "FreeControlPipeline", "SemanticBases"]


def __getattr__(name: str) -> Any:
    if name in ("BasesConfig", "FreeControlConfig"):
        from i2i.freecontrol import config

        return getattr(config, name)
    if name in ("FreeControlPipeline", "FreeControlOutput"):
        from i2i.freecontrol import pipeline

        return getattr(pipeline, name)
    if name == "SemanticBases":
        from i2i.freecontrol.bases import SemanticBases

        return SemanticBases
    raise AttributeError(name)
