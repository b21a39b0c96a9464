"""Plain text-to-image sampling on the shared core: the same initial noise, text conditioning, DDIM steps and
float32 VAE decode as FreeControl and Ctrl-X use, with nothing added; on the same settings it gives diffusers'
own ``StableDiffusionPipeline`` latents.

    pipe = GeneratePipeline.from_pretrained("runwayml/stable-diffusion-v1-5", device="cuda", precision="fp16")
    pipe("a photo of a lion", seed=0).images[0].save("lion.png")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from PIL import Image

from i2i.diffusion.cache import progress_bar
from i2i.diffusion.jobs import JobResult
from i2i.diffusion.model import DiffusionModel
from i2i.generate.config import DEFAULT_SEED, GENERATE, GenerateConfig

if TYPE_CHECKING:
    from i2i.progress import Reporter


@dataclass
class GenerateOutput:
    """Result of one call: ``num_images`` PIL images, their latents ``[N, c, h, w]`` (CPU) and the timesteps."""

    images: list[Image.Image]
    latents: torch.Tensor
    timesteps: list[int]


class GeneratePipeline(DiffusionModel):
    """Classifier-free-guided DDIM sampling from a prompt on a diffusers SD 1.x / 2.x or SDXL pipeline."""

    method = GENERATE

    @torch.no_grad()
    def __call__(self, prompt: str, config: GenerateConfig | None = None, *, seed: int = DEFAULT_SEED,
                 num_images: int = 1, latents: torch.Tensor | None = None,
                 reporter: "Reporter | None" = None) -> GenerateOutput:
        """``num_images`` square images (long side ``config.size``, default the model's native size) for
        ``prompt``. ``latents`` ``[N, c, h, w]`` replaces the seeded initial noise; with ``config.eta`` above 0
        the steps draw their noise from the same seeded generator, as diffusers does."""
        start = self.start(config, {}, seed, num_images, latents)
        config = start.config
        for text, what in ((prompt, "the prompt"), (config.negative_prompt, "the negative prompt")):
            self.check_prompt_length(text, what, reporter, depth=3)   # the caller of __call__ (under no_grad)
        text = self.encode_text([prompt], start.shape, negative=config.negative_prompt)
        x = start.noise
        with progress_bar(reporter, len(start.timesteps), "generate") as advance:
            for t in start.timesteps:
                eps = self.cfg_noise(x, t, text.expand(x.shape[0]), config.guidance_scale)
                x = start.scheduler.step(eps, t, x, eta=config.eta, generator=start.generator).prev_sample
                advance(1)
        return GenerateOutput(self.decode(x), x.cpu(), [int(t) for t in start.timesteps])

    def run_job(self, job: dict, images: dict, config: GenerateConfig, extras: tuple[str, ...] = (),
                reporter: "Reporter | None" = None) -> JobResult:
        """One job of the shared loop (:func:`i2i.diffusion.jobs.run_jobs`): a prompt, seed and number of images."""
        return JobResult(self(job["prompt"], config, seed=job["seed"], num_images=job["num_images"],
                              reporter=reporter).images)
