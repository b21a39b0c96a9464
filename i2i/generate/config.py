"""Settings of plain text-to-image sampling, with diffusers' ``StableDiffusionPipeline`` defaults (50 DDIM steps,
guidance 7.5, eta 0, an empty negative prompt)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from i2i.diffusion.jobs import JobSchema
from i2i.diffusion.method import MAX_STEPS, DiffusionMethod
from i2i.errors import UsageError
from i2i.options import check_non_negative, flag, option

DEFAULT_SEED = 0
SAMPLING = "Sampling"


@dataclass(frozen=True)
class GenerateConfig:
    """One plain sampling run: DDIM with classifier-free guidance, as diffusers' own pipeline samples."""

    num_inference_steps: int = option(50, flag="--steps", help="DDIM steps.", panel=SAMPLING)
    guidance_scale: float = option(7.5, help="Classifier-free guidance scale.", panel=SAMPLING)
    negative_prompt: str = option("", help="Negative prompt.", panel=SAMPLING)
    eta: float = option(0.0, help="DDIM eta: 0 deterministic steps, 1 as much fresh noise as DDPM.", panel=SAMPLING)
    size: int | None = option(None, help="Side of the square output in pixels (none: the model's native size, "
                              "e.g. 512 for SD 1.5, 1024 for SDXL).")

    def validate(self) -> "GenerateConfig":
        checks = [(1 <= self.num_inference_steps <= MAX_STEPS, "num_inference_steps",
                   f"must be between 1 and {MAX_STEPS}"),
                  (0 <= self.eta <= 1, "eta", "must be between 0 and 1"),
                  (self.size is None or self.size >= 8, "size", "must be at least 8 pixels")]
        check_non_negative(self, "guidance_scale")
        for ok, name, rule in checks:
            if not ok:
                raise UsageError(f"{flag(self, name)} {rule}")
        return self


# A job is a prompt (no input image); nothing is saved beside the image.
GENERATE_JOBS = JobSchema(images=())
GENERATE = DiffusionMethod(
    "generate", GenerateConfig, "i2i.generate.pipeline:GeneratePipeline", GENERATE_JOBS, DEFAULT_SEED,
    shown=("num_inference_steps", "guidance_scale", "eta", "negative_prompt"),
    summary="Plain text-to-image sampling of a Stable Diffusion model (SD 1.x, 2.x, SDXL) or the bundled demo model: "
            "the baseline FreeControl's and Ctrl-X's costs are divided by.",
    usage="Generate images from prompts: i2i generate --prompt \"a red circle\" [--model DIR_OR_ID].")


def model_config(model: str | Path | None) -> GenerateConfig:
    """The defaults with ``model``'s recommended settings (``i2i_generate.json`` in its folder) applied."""
    return GENERATE.model_config(model)
