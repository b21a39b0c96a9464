"""Settings of Ctrl-X (Lin, Mo et al., NeurIPS 2024), with the official code's defaults (genforce/ctrl-x:
``run_ctrlx.py`` and the pipeline's ``__call__``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from i2i.diffusion.jobs import JobFlag, JobSchema
from i2i.diffusion.method import MAX_STEPS, DiffusionMethod
from i2i.errors import UsageError
from i2i.options import check_non_negative, flag, option

POSITIVE_PROMPT = "high quality"
NEGATIVE_PROMPT = "ugly, blurry, dark, low res, unrealistic"
DEFAULT_SEED = 90095                     # run_ctrlx.py's seed
OFFICIAL_SELF_RECURRENCE = (0.1, 0.5, 2)  # run_ctrlx.py: steps [0.1 N, 0.5 N), twice each
CONTROL = "Control (official defaults, or the model's recommended settings)"
CORRESPONDENCES = ("output", "structure")


@dataclass(frozen=True)
class CtrlXConfig:
    """One Ctrl-X run. ``structure_schedule`` / ``appearance_schedule``: structure injection / appearance transfer
    on the first round(N * value) steps (the noisiest). ``self_recurrence``: ``(start, end, repeats)`` as fractions
    of the steps, or None (off; the official scripts use :data:`OFFICIAL_SELF_RECURRENCE`, the pipeline's own
    default is off). ``eta``: DDIM stochasticity (the scripts' 1.0; the pipeline's default 0.0).
    ``correspondence``: whose queries weight the appearance statistics: ``"output"`` (official: the output's, the
    structure image's in layers where structure is injected) or ``"structure"`` (the structure image's in every
    appearance layer while structure is injected; a deviation, docs/ctrlx.md)."""

    num_inference_steps: int = option(50, flag="--steps", help="DDIM steps.", panel=CONTROL)
    guidance_scale: float = option(5.0, help="Classifier-free guidance scale.", panel=CONTROL)
    structure_guidance_scale: float | None = None     # CFG of a generated structure branch (None: guidance_scale)
    appearance_guidance_scale: float | None = None    # CFG of a generated appearance branch (None: guidance_scale)
    structure_schedule: float = option(0.6, help="Inject structure on this first fraction of the steps.",
                                       panel=CONTROL)
    appearance_schedule: float = option(0.6, help="Transfer appearance on this first fraction of the steps.",
                                        panel=CONTROL)
    correspondence: str = option(
        "output", choices=CORRESPONDENCES, help="Whose queries match each token to the appearance image: output "
        "(official) or structure (the structure image's in every appearance layer while structure is injected).",
        panel=CONTROL)
    eta: float = option(1.0, help="DDIM eta (the default is the official scripts').", panel=CONTROL)
    self_recurrence: tuple[float, float, int] | None = None      # its flag: a switch (i2i.cli.ctrlx)
    positive_prompt: str = option(POSITIVE_PROMPT, help="Appended to the prompt after a comma.", panel=CONTROL)
    negative_prompt: str = option(NEGATIVE_PROMPT, help="Negative prompt (the default is the official scripts').",
                                  panel=CONTROL)
    size: int | None = option(None, help="Long side of the output in pixels; the short side follows the structure "
                              "image's aspect ratio (none: the model's native size, e.g. 512 for SD 1.5, 1024 for "
                              "SDXL).")

    def validate(self) -> "CtrlXConfig":
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise UsageError(message)

        check(1 <= self.num_inference_steps <= MAX_STEPS,
              f"{flag(self, 'num_inference_steps')} must be between 1 and {MAX_STEPS}")
        check_non_negative(self, "guidance_scale")
        for name in ("structure_schedule", "appearance_schedule", "eta"):
            check(0 <= getattr(self, name) <= 1, f"{flag(self, name)} must be between 0 and 1")
        check(self.correspondence in CORRESPONDENCES, f"{flag(self, 'correspondence')} must be one of "
              f"{', '.join(CORRESPONDENCES)}, not {self.correspondence!r}")
        check(self.size is None or self.size >= 8, f"{flag(self, 'size')} must be at least 8 pixels")
        if self.self_recurrence is not None:
            start, end, repeats = self.self_recurrence
            check(0 <= start <= end <= 1 and int(repeats) >= 1,
                  "self-recurrence needs 0 <= start <= end <= 1 and at least one repeat")
        return self

    def control_steps(self, schedule: float) -> int:
        """How many of the first steps a schedule value covers: round(N * value) (official ``get_schedule``)."""
        return int(round(self.num_inference_steps * schedule))

    def recurrence_steps(self) -> range:
        if self.self_recurrence is None:
            return range(0)
        start, end, _ = self.self_recurrence
        return range(int(round(start * self.num_inference_steps)), int(round(end * self.num_inference_steps)))


# What a Ctrl-X job (a JSONL line) may hold; the branches can be saved beside each image.
CTRLX_JOBS = JobSchema(
    images=("structure", "appearance"), options=("structure_prompt", "appearance_prompt"),
    extras=("structure_branch", "appearance_branch"),
    flags={
        "structure": JobFlag("Structure image (sketch, edges, depth, a photo, ...): the output keeps its layout and "
                             "aspect ratio; repeatable. A video (clip.mp4) makes a video: one frame per frame, all "
                             "with the same seed.", short="s"),
        "appearance": JobFlag("Appearance image: the output takes its colours and textures (default: an appearance "
                              "generated from the prompt); once for all, or once per --structure.", short="a"),
        "structure_prompt": JobFlag("Describes the structure image, e.g. \"a sketch of a dog\" (default: the "
                                    "prompt)."),
        "appearance_prompt": JobFlag("Describes the appearance image (default: the prompt)."),
    })
CTRLX = DiffusionMethod(
    "ctrlx", CtrlXConfig, "i2i.ctrlx.pipeline:CtrlXPipeline", CTRLX_JOBS, DEFAULT_SEED,
    shown=("num_inference_steps", "guidance_scale", "structure_schedule", "appearance_schedule",
           "correspondence", "eta", "self_recurrence", "positive_prompt", "negative_prompt"),
    summary="Ctrl-X (Lin, Mo et al., NeurIPS 2024): structure and appearance control of a text-to-image diffusion "
            "model (SD 1.x, 2.x, SDXL) with no guidance, inversion or training.",
    usage="Generate images with a structure image's layout: i2i ctrlx --prompt \"a blue square\" --structure "
          "sketch.png [--appearance look.png].")
METHOD = CTRLX.name


def model_config(model: str | Path | None) -> CtrlXConfig:
    """The official defaults with ``model``'s recommended settings (``i2i_ctrlx.json`` in its folder) applied."""
    return CTRLX.model_config(model)
