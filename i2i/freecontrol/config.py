"""Frozen configs of the FreeControl backend, with the official code's defaults (genforce/freecontrol: the Gradio
app's values merged over ``config/base.yaml``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from i2i.diffusion.jobs import JobSchema
from i2i.errors import UsageError

# The official synthesis negative prompt (base.yaml) and the analysis one (sample_semantic_bases.py).
NEGATIVE_PROMPT = ("longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer digits, cropped, "
                   "worst quality, low quality")
BASES_NEGATIVE_PROMPT = "fewer digits, cropped, worst quality, low quality"
BASES_PROMPT = "A photo of a {}, with a simple background, best quality, extremely detailed"
DEFAULT_SEED = 2028                    # the official synthesis seed
BASES_SOURCES = ("generated", "inverted", "images")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


@dataclass(frozen=True)
class BasesConfig:
    """Analysis stage: seed images from a generic prompt, keys recorded along their generation, PCA per timestep
    and layer. Official: 20 images, seed 2024, 200 DDIM steps of which the first 120 (60%) are analysed, CFG 7.5,
    64 components.

    ``source`` says where the keys come from: ``"generated"`` (the official code: along the seed images'
    generation), ``"inverted"`` (the seed images are generated to the end, then DDIM-inverted, and the keys are
    taken along the inverted trajectories, the paper's description) or ``"images"`` (the user's own images of the
    concept in the folder ``images``, each DDIM-inverted). Inversion uses ``inversion_prompt`` ("{}": the concept;
    None: the analysis prompt) and ``inversion_steps`` (None: the synthesis config's)."""

    prompt_template: str = BASES_PROMPT
    negative_prompt: str = BASES_NEGATIVE_PROMPT
    num_images: int = 20
    seed: int = 2024
    num_inference_steps: int = 200
    analysis_end: float = 0.6          # fraction of the schedule analysed (official num_save_steps 120 of 200)
    n_components: int = 64
    guidance_scale: float = 7.5
    batch_size: int = 4                # seed images per UNet call (memory only; the result does not depend on it)
    size: int | None = None            # None: the model's native size
    block: str | None = None           # None: up_blocks.1 (SD 1.x/2.x) or up_blocks.0 (SDXL)
    source: str = "generated"          # "generated" (official), "inverted" or "images"
    images: str | None = None          # folder of the concept's images (source "images")
    inversion_prompt: str | None = None
    inversion_steps: int | None = None

    def validate(self) -> "BasesConfig":
        _check(self.num_images >= 1, "--seed-images must be at least 1")
        _check(1 <= self.num_inference_steps <= 1000, "--bases-steps must be between 1 and 1000")
        _check(0 < self.analysis_end <= 1, "--analysis-end must be in (0, 1]")
        _check(self.n_components >= 1, "--components must be at least 1")
        _check(self.batch_size >= 1, "--bases-batch-size must be at least 1")
        _check("{}" in self.prompt_template, "the analysis prompt template needs a {} for the concept")
        _check(self.source in BASES_SOURCES, f"the bases source must be one of {', '.join(BASES_SOURCES)}")
        _check((self.source == "images") == (self.images is not None),
               "bases from images need a folder (--images DIR), and only they take one")
        _check(self.inversion_steps is None or 1 <= self.inversion_steps <= 1000,
               "--inversion-steps must be between 1 and 1000")
        return self

    def inversion_text(self, concept: str) -> str:
        """The prompt the seed or user images are inverted with."""
        return self.prompt(concept) if self.inversion_prompt is None else self.inversion_prompt.replace("{}", concept)

    def prompt(self, concept: str) -> str:
        return self.prompt_template.replace("{}", concept)


@dataclass(frozen=True)
class FreeControlConfig:
    """Guided synthesis. Defaults are the official Gradio app's (merged over base.yaml)."""

    num_inference_steps: int = 200
    guidance_scale: float = 7.5
    structure_weight: float = 600.0    # official `pca_guidance.weight` (Gradio 600, yaml 800)
    appearance_weight: float = 0.1     # official `reg_factor`, relative to the structure weight (yaml 0.05)
    guidance_end: float = 0.6          # guidance on the first 60% of steps (yaml: 0.4)
    warmup: float = 0.05               # structure weight ramps up over the first 5% of steps (10 of 200)
    n_components: int = 64
    mask_threshold: float = 0.3        # 0 disables the mask (plain MSE, as in image-to-image)
    penalty: float = 10.0              # background penalty factor w
    appearance_components: int = 2     # N_a
    appearance_threshold: float = 0.5
    negative_prompt: str = NEGATIVE_PROMPT
    inversion_steps: int = 999
    img2img: bool = False              # start from the condition's inverted x_T, no mask
    appearance_same_latent: bool = False   # img2img: the unguided sibling also starts from x_T (official False)
    size: int | None = None            # output side in pixels; None: the model's native size
    bases: BasesConfig = dataclasses.field(default_factory=BasesConfig)

    def validate(self) -> "FreeControlConfig":
        _check(1 <= self.num_inference_steps <= 1000, "--steps must be between 1 and 1000")
        _check(self.guidance_scale >= 0, "--guidance-scale must not be negative")
        _check(self.structure_weight >= 0, "--structure-weight must not be negative")
        _check(self.appearance_weight >= 0, "--appearance-weight must not be negative")
        _check(0 <= self.guidance_end <= 1, "--guidance-end must be between 0 and 1")
        _check(0 <= self.warmup <= 1, "--warmup must be between 0 and 1")
        _check(self.n_components >= 1, "--components must be at least 1")
        _check(0 <= self.mask_threshold < 1, "--mask-threshold must be in [0, 1)")
        _check(self.penalty >= 0, "--penalty must not be negative")
        _check(self.appearance_components >= 1, "--appearance-components must be at least 1")
        _check(1 <= self.inversion_steps <= 1000, "--inversion-steps must be between 1 and 1000")
        _check(self.size is None or self.size >= 8, "--size must be at least 8 pixels")
        self.bases.validate()
        return self

    @property
    def guided_steps(self) -> int:
        """Steps (from the start of the schedule) that receive guidance."""
        return int(self.guidance_end * self.num_inference_steps + 1e-9)

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup * self.num_inference_steps))


# A model folder may ship its own recommended settings (e.g. the small demo model: fewer steps, no negative
# prompt); flags and arguments given explicitly still win.
METHOD = "freecontrol"
MODEL_DEFAULTS_FILE = f"i2i_{METHOD}.json"


def read_model_defaults(model: str | Path | None) -> dict:
    """The recommended settings in ``MODEL/i2i_freecontrol.json`` (``{}`` when ``model`` is not a local folder
    or has none): FreeControlConfig field names, plus ``"bases"`` with BasesConfig field names."""
    from i2i.diffusion.settings import read_recommended

    return read_recommended(model, METHOD, FreeControlConfig, {"bases": BasesConfig})


def apply_model_defaults(config: FreeControlConfig, defaults: dict) -> FreeControlConfig:
    """``config`` with a model's recommended settings (see :func:`read_model_defaults`) applied."""
    from i2i.diffusion.settings import apply_recommended

    return apply_recommended(config, defaults, ("bases",))


def model_config(model: str | Path | None) -> FreeControlConfig:
    """The official defaults with ``model``'s recommended settings (if it is a folder that ships any) applied."""
    return apply_model_defaults(FreeControlConfig(), read_model_defaults(model))



# What a FreeControl job (a JSONL line) may hold (an appearance image is optional); "unguided" is the optional
# sibling saved beside each image.
FREECONTROL_JOBS = JobSchema(images=("condition", "appearance"),
                             options=("inversion_prompt", "appearance_prompt", "subject", "concept", "img2img"),
                             extras=("unguided",))
