"""Settings of plain text-to-image sampling, with diffusers' ``StableDiffusionPipeline`` defaults (50 DDIM steps,
guidance 7.5, eta 0, an empty negative prompt)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from i2i.diffusion.jobs import JobSchema
from i2i.errors import UsageError

DEFAULT_SEED = 0
METHOD = "generate"


@dataclass(frozen=True)
class GenerateConfig:
    """One plain sampling run: DDIM with classifier-free guidance, as diffusers' own pipeline samples."""

    num_inference_steps: int = 50
    guidance_scale: float = 7.5
    negative_prompt: str = ""
    eta: float = 0.0
    size: int | None = None                           # long side in pixels; None: the model's native size

    def validate(self) -> "GenerateConfig":
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise UsageError(message)

        check(1 <= self.num_inference_steps <= 1000, "--steps must be between 1 and 1000")
        check(self.guidance_scale >= 0, "--guidance-scale must not be negative")
        check(0 <= self.eta <= 1, "--eta must be between 0 and 1")
        check(self.size is None or self.size >= 8, "--size must be at least 8 pixels")
        return self


def model_config(model: str | Path | None) -> GenerateConfig:
    """The defaults with ``model``'s recommended settings (``i2i_generate.json`` in its folder) applied."""
    from i2i.diffusion.settings import apply_recommended, read_recommended

    return apply_recommended(GenerateConfig(), read_recommended(model, METHOD, GenerateConfig))


# A job is a prompt (no input image); nothing is saved beside the image.
GENERATE_JOBS = JobSchema(images=())
