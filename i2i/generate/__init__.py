"""Plain text-to-image sampling (classifier-free guidance, DDIM) on the shared diffusion core: ``i2i generate``, and
the baseline that FreeControl's and Ctrl-X's costs are divided by.

Heavy imports (torch, diffusers) happen when the pipeline is imported: ``from i2i.generate import GeneratePipeline``
loads it lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GenerateConfig", "GenerateOutput", "GeneratePipeline"]


def __getattr__(name: str) -> Any:
    if name == "GenerateConfig":
        from i2i.generate.config import GenerateConfig

        return GenerateConfig
    if name in ("GeneratePipeline", "GenerateOutput"):
        from i2i.generate import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
