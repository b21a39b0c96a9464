"""Where the bundled demo model lives, and a clear error when it is missing."""

from __future__ import annotations

from pathlib import Path

from i2i.errors import CheckpointError

DEMO_MODEL_NAME = "demo-shapes"
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def demo_model_path() -> Path:
    """The folder of the bundled demo model (a diffusers StableDiffusionPipeline folder) inside the package."""
    path = ASSETS / DEMO_MODEL_NAME
    if not (path / "model_index.json").is_file():
        raise CheckpointError(f"the bundled demo model is missing ({path}); pass --model with a local Stable "
                              "Diffusion folder or hub id, or train it: python -m i2i.demo.train")
    return path


# The demo model's recommended FreeControl settings, shipped as i2i_freecontrol.json in its folder: a 64 px model
# needs far fewer steps than SD's official 200/999, and it was trained with an empty unconditional prompt, so the
# official negative prompt (words it never saw) is replaced by "". The energy's scale depends on the model; here
# the structure weight is doubled (measured on the shipped model, seed 0 x 18 prompts, outline sketches: mean IoU
# 0.47 at the official 600, 0.61 at 1200). Everything else keeps the official defaults.
DEMO_FREECONTROL_DEFAULTS: dict = {
    "num_inference_steps": 50,
    "structure_weight": 1200.0,
    "inversion_steps": 200,
    "negative_prompt": "",
    "bases": {"num_inference_steps": 50, "negative_prompt": ""},
}


def write_freecontrol_defaults(folder: Path) -> Path:
    """Write :data:`DEMO_FREECONTROL_DEFAULTS` into a model folder as ``i2i_freecontrol.json``."""
    import json

    from i2i.freecontrol.config import MODEL_DEFAULTS_FILE

    path = Path(folder) / MODEL_DEFAULTS_FILE
    path.write_text(json.dumps(DEMO_FREECONTROL_DEFAULTS, indent=2) + "\n", encoding="utf-8")
    return path
