"""Where the bundled demo model lives, and a clear error when it is missing."""

from __future__ import annotations

from pathlib import Path

from i2i.errors import CheckpointError

DEMO_MODEL_NAME = "demo-shapes"


def demo_model_path() -> Path:
    """The folder of the bundled demo model (a diffusers StableDiffusionPipeline folder) inside the package."""
    path = Path(__file__).resolve().parent.parent / "assets" / DEMO_MODEL_NAME
    if not (path / "model_index.json").is_file():
        raise CheckpointError(f"the bundled demo model is missing ({path}); pass --model with a local Stable "
                              "Diffusion folder or hub id, or train it: python -m i2i.demo.train")
    return path
