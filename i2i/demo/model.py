"""Where the bundled demo model lives, and a clear error when it is missing."""

from __future__ import annotations

import re
from collections.abc import Iterable
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


# The demo model's recommended FreeControl settings, shipped as i2i_freecontrol.json in its folder. Measured on
# the shipped model with outline sketches (`python -m i2i.demo.report`); everything else keeps the official defaults:
# - 50 steps and 200 inversion steps: a 64 px model needs far fewer than SD's official 200/999;
# - structure weight 1200: the energy's scale depends on the model (seed 0 x 18 prompts, with the mask: mean IoU
#   0.47 at the official 600, 0.61 at 1200);
# - no subject mask (mask_threshold 0, the official switch that img2img also uses): this model's cross-attention
#   does not single out the subject (at the guided steps the subject token's min-max-normalised heat stays at
#   0.4-0.6 over the background, so the 0.3 threshold keeps most of the image, and tighter thresholds of 0.5-0.7
#   lowered the IoU to 0.36-0.44);
# - negative prompt "outline" instead of the official list (words this model never saw): the model also draws
#   outline sketches, and without it guided samples often copied the sketch's hollow outline.
# With the mask and no negative prompt, seeds 0-2 gave IoU 0.63 and colour 69%; with these settings 0.73 and 89%.
DEMO_FREECONTROL_DEFAULTS: dict = {
    "num_inference_steps": 50,
    "structure_weight": 1200.0,
    "inversion_steps": 200,
    "mask_threshold": 0.0,
    "negative_prompt": "outline",
    "bases": {"num_inference_steps": 50, "negative_prompt": ""},
}


def demo_vocabulary_warning(texts: Iterable[str], model: str | Path) -> str | None:
    """A warning naming the words of ``texts`` that a demo model (a folder with ``i2i_demo.json``) has no
    tokens for, or None (all known, or not a demo model). The demo model knows a few dozen words (shapes,
    colours, its prompt templates), so "a lion" gives it nothing to draw a lion from."""
    if not (Path(model) / "i2i_demo.json").is_file():
        return None
    from i2i.demo.data import VOCABULARY
    from i2i.shapes import COLOURS, SHAPES

    words = {w for text in texts for w in re.findall(r"[a-z]+", text.lower())}
    unknown = sorted(words - set(VOCABULARY))
    if not unknown:
        return None
    listed = ", ".join(repr(w) for w in unknown[:8]) + (", ..." if len(unknown) > 8 else "")
    return (f"{model} is the small demo model: it knows only shapes ({', '.join(SHAPES)}) and colours "
            f"({', '.join(COLOURS)}), not {listed}; pass --model with a Stable Diffusion checkpoint for other "
            "subjects")


def write_freecontrol_defaults(folder: Path) -> Path:
    """Write :data:`DEMO_FREECONTROL_DEFAULTS` into a model folder as ``i2i_freecontrol.json``."""
    import json

    from i2i.freecontrol.config import MODEL_DEFAULTS_FILE

    path = Path(folder) / MODEL_DEFAULTS_FILE
    path.write_text(json.dumps(DEMO_FREECONTROL_DEFAULTS, indent=2) + "\n", encoding="utf-8")
    return path
