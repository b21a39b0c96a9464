"""Frozen configs of the FreeControl backend, with the official code's defaults (genforce/freecontrol: the Gradio
app's values merged over ``config/base.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from i2i.diffusion.jobs import JobFlag, JobSchema
from i2i.diffusion.method import MAX_STEPS, DiffusionMethod
from i2i.errors import UsageError
from i2i.options import check_non_negative, flag, option
from i2i.seeds import check_seed

# The official synthesis negative prompt (base.yaml) and the analysis one (sample_semantic_bases.py).
NEGATIVE_PROMPT = ("longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer digits, cropped, "
                   "worst quality, low quality")
BASES_NEGATIVE_PROMPT = "fewer digits, cropped, worst quality, low quality"
BASES_PROMPT = "A photo of a {}, with a simple background, best quality, extremely detailed"
DEFAULT_SEED = 2028                    # the official synthesis seed
BASES_SOURCES = ("generated", "inverted", "images")
GUIDE = "Guidance (official defaults)"
SIZE_HELP = ("Long side of the output in pixels; the short side follows the condition's aspect ratio (rounded to the "
             "model's size unit) and the condition is resized to that (none: the model's native size, e.g. 512 for "
             "SD 1.5, 1024 for SDXL). The analysis runs square at this size.")
ANALYSIS = "Analysis stage (semantic bases)"


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _range(config: object, name: str, low: float, high: float) -> None:
    value = getattr(config, name)
    _check(low <= value <= high, f"{flag(config, name)} must be between {low:g} and {high:g}")


def _at_least(config: object, name: str, low: float, unit: str = "") -> None:
    _check(getattr(config, name) >= low, f"{flag(config, name)} must be at least {low:g}{unit}")


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

    prompt_template: str = option(BASES_PROMPT, help="Analysis prompt with {} for the concept.", panel=ANALYSIS)
    negative_prompt: str = BASES_NEGATIVE_PROMPT
    num_images: int = option(20, flag="--seed-images", help="Seed images generated for the analysis.",
                             panel=ANALYSIS)
    seed: int = option(2024, flag="--bases-seed", help="Seed of the analysis images.", panel=ANALYSIS)
    num_inference_steps: int = option(200, flag="--bases-steps", help="DDIM steps of the analysis run.",
                                      panel=ANALYSIS)
    analysis_end: float = option(0.6, help="Fraction of the schedule analysed (the official 120 of 200 steps).",
                                 panel=ANALYSIS)
    n_components: int = option(64, flag="--components", help="PCA components kept by the analysis and used by the "
                               "structure energy.", panel=ANALYSIS)
    guidance_scale: float = 7.5
    batch_size: int = option(4, flag="--bases-batch-size", help="Seed images per UNet call of the analysis (memory "
                             "only: the bases do not depend on it).", panel=ANALYSIS)
    size: int | None = option(None, help=SIZE_HELP)
    block: str | None = None           # None: up_blocks.1 (SD 1.x/2.x) or up_blocks.0 (SDXL)
    source: str = "generated"          # "generated" (official), "inverted" or "images"
    images: str | None = None          # folder of the concept's images (source "images")
    inversion_prompt: str | None = option(None, flag="--image-prompt", help="With --images or --from-inverted: "
                                          "the prompt they are inverted with, {} for the concept (none: the "
                                          "analysis prompt).", panel=ANALYSIS)
    inversion_steps: int | None = option(None, help="DDIM inversion steps of the condition, the --images and "
                                         "the --from-inverted seed images (none: the synthesis setting, "
                                         "--inversion-steps of `i2i freecontrol`).", panel=ANALYSIS)

    def validate(self) -> "BasesConfig":
        _at_least(self, "num_images", 1)
        object.__setattr__(self, "seed", check_seed(self.seed, flag(self, "seed")))    # a NumPy int -> int
        _range(self, "num_inference_steps", 1, MAX_STEPS)
        check_non_negative(self, "guidance_scale")
        _check(0 < self.analysis_end <= 1, f"{flag(self, 'analysis_end')} must be in (0, 1]")
        _at_least(self, "n_components", 1)
        _at_least(self, "batch_size", 1)
        _check("{}" in self.prompt_template, "the analysis prompt template needs a {} for the concept")
        _check(self.source in BASES_SOURCES, f"the bases source must be one of {', '.join(BASES_SOURCES)}")
        _check((self.source == "images") == (self.images is not None),
               "bases from images need a folder (--images DIR), and only they take one")
        if self.inversion_steps is not None:
            _range(self, "inversion_steps", 1, 1000)
        return self

    def inversion_text(self, concept: str) -> str:
        """The prompt the seed or user images are inverted with."""
        return self.prompt(concept) if self.inversion_prompt is None else self.inversion_prompt.replace("{}", concept)

    def prompt(self, concept: str) -> str:
        return self.prompt_template.replace("{}", concept)


@dataclass(frozen=True)
class FreeControlConfig:
    """Guided synthesis. Defaults are the official Gradio app's (merged over base.yaml)."""

    num_inference_steps: int = option(200, flag="--steps", help="DDIM steps.", panel=GUIDE)
    guidance_scale: float = option(7.5, help="Classifier-free guidance scale.", panel=GUIDE)
    # official `pca_guidance.weight` (Gradio 600, yaml 800)
    structure_weight: float = option(600.0, help="Weight of the guidance energy; 0 turns guidance off.", panel=GUIDE)
    # official `reg_factor` (yaml 0.05)
    appearance_weight: float = option(0.1, help="Appearance energy factor, relative to the structure weight.",
                                      panel=GUIDE)
    guidance_end: float = option(0.6, help="Guide the first this fraction of the steps.", panel=GUIDE)  # yaml 0.4
    warmup: float = option(0.05, help="Fraction of the steps over which the weight ramps up from 0.", panel=GUIDE)
    n_components: int = option(64, flag="--components", help="PCA components used by the structure energy, and "
                               "kept by the analysis.", panel=GUIDE)
    mask_threshold: float = option(0.3, help="Threshold of the subject cross-attention mask; 0: no mask (plain "
                                   "MSE, as in image-to-image).", panel=GUIDE)
    penalty: float = option(10.0, help="Background penalty factor outside the mask.", panel=GUIDE)
    appearance_components: int = option(2, help="Semantic components whose regions give the appearance vectors.",
                                        panel=GUIDE)
    appearance_threshold: float = 0.5
    negative_prompt: str = option(NEGATIVE_PROMPT, help="Negative prompt.", panel=GUIDE)
    inversion_steps: int = option(999, help="DDIM inversion steps of the condition.", panel=GUIDE)
    img2img: bool = option(False, help="Image-to-image: start from the condition's inverted latent, no mask.",
                           panel=GUIDE)
    appearance_same_latent: bool = False   # img2img: the unguided sibling also starts from x_T (official False)
    size: int | None = option(None, help=SIZE_HELP)       # the same flag sets the analysis size
    bases: BasesConfig = BasesConfig()

    def validate(self) -> "FreeControlConfig":
        _range(self, "num_inference_steps", 1, MAX_STEPS)
        check_non_negative(self, "guidance_scale", "structure_weight", "appearance_weight", "penalty")
        _range(self, "guidance_end", 0, 1)
        _range(self, "warmup", 0, 1)
        _at_least(self, "n_components", 1)
        _check(0 <= self.mask_threshold < 1, f"{flag(self, 'mask_threshold')} must be in [0, 1)")
        _at_least(self, "appearance_components", 1)
        _range(self, "inversion_steps", 1, 1000)
        if self.size is not None:
            _at_least(self, "size", 8, " pixels")
        self.bases.validate()
        return self

    @property
    def guided_steps(self) -> int:
        """Steps (from the start of the schedule) that receive guidance."""
        return int(self.guidance_end * self.num_inference_steps + 1e-9)

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup * self.num_inference_steps))


# What a FreeControl job (a JSONL line) may hold (an appearance image is optional); "unguided" is the optional
# sibling saved beside each image.
FREECONTROL_JOBS = JobSchema(
    images=("condition", "appearance"),
    options=("inversion_prompt", "appearance_prompt", "subject", "concept", "img2img"),
    extras=("unguided",),
    flags={
        "condition": JobFlag("Condition image (sketch, depth, edges, a photo, ...); repeatable. A video (clip.mp4) "
                             "makes a video: one frame per frame, all with the same seed.", short="c"),
        "appearance": JobFlag("Appearance image: DDIM-inverted, its appearance vectors replace the unguided "
                              "sibling's in the appearance energy, so the output takes its colours (weight: "
                              "--appearance-weight); once for all, or once per --condition.", short="a"),
        "appearance_prompt": JobFlag("Describes the appearance image for its DDIM inversion (default: the prompt)."),
        "inversion_prompt": JobFlag("Describes the condition image for its DDIM inversion, e.g. \"a sketch of a dog\" "
                                    "(default: the prompt)."),
        "subject": JobFlag("\"COND_WORD;GEN_WORD\", e.g. \"dog;lion\": COND_WORD's cross-attention in the inversion "
                           "prompt gives the mask, GEN_WORD the concept (default: every word of the inversion "
                           "prompt)."),
        "concept": JobFlag("Concept of the semantic bases (default: GEN_WORD of --subject, else the last word of "
                           "the prompt's first comma-separated part that has one).", panel=ANALYSIS),
    })
# A model folder may ship its own recommended settings (``i2i_freecontrol.json``, e.g. the small demo model's fewer
# steps); flags and arguments given explicitly still win.
FREECONTROL = DiffusionMethod("freecontrol", FreeControlConfig, "i2i.freecontrol.pipeline:FreeControlPipeline",
                              FREECONTROL_JOBS, DEFAULT_SEED,
                              shown=("num_inference_steps", "guidance_scale", "structure_weight", "n_components",
                                     "appearance_weight", "mask_threshold", "negative_prompt", "inversion_steps",
                                     "bases.block"),
                              summary="FreeControl (Mo et al., CVPR 2024): training-free spatial control of a "
                                      "text-to-image diffusion model (SD 1.x, 2.x, SDXL) with any condition image.",
                              usage="Generate images that follow a condition's structure: i2i freecontrol --prompt "
                                    "\"a photo of a lion\" --condition sketch.png --model DIR_OR_ID. Subcommand "
                                    "`bases` precomputes the semantic bases.")
METHOD = FREECONTROL.name
MODEL_DEFAULTS_FILE = f"i2i_{METHOD}.json"


def model_config(model: str | Path | None) -> FreeControlConfig:
    """The official defaults with ``model``'s recommended settings (if it is a folder that ships any) applied."""
    return FREECONTROL.model_config(model)
