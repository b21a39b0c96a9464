"""Ctrl-X (Lin, Mo et al., NeurIPS 2024): training-free and guidance-free structure and appearance control of a
text-to-image diffusion model.

Heavy imports (torch, diffusers) happen when the submodules are imported: ``from i2i.ctrlx import CtrlXPipeline``
loads them lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CtrlXConfig", "CtrlXOutput", "CtrlXPipeline"]


def __getattr__(name: str) -> Any:
    if name == "CtrlXConfig":
        from i2i.ctrlx.config import CtrlXConfig

        return CtrlXConfig
    if name in ("CtrlXPipeline", "CtrlXOutput"):
        from i2i.ctrlx import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
