"""Settings of Ctrl-X (Lin, Mo et al., NeurIPS 2024), with the official code's defaults (genforce/ctrl-x:
``run_ctrlx.py`` and the pipeline's ``__call__``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from i2i.diffusion.jobs import JobSchema
from i2i.errors import UsageError

POSITIVE_PROMPT = "high quality"
NEGATIVE_PROMPT = "ugly, blurry, dark, low res, unrealistic"
DEFAULT_SEED = 90095                     # run_ctrlx.py's seed
OFFICIAL_SELF_RECURRENCE = (0.1, 0.5, 2)  # run_ctrlx.py: steps [0.1 N, 0.5 N), twice each


@dataclass(frozen=True)
class CtrlXConfig:
    """One Ctrl-X run. ``structure_schedule`` / ``appearance_schedule``: structure injection / appearance transfer
    on the first round(N * value) steps (the noisiest). ``self_recurrence``: ``(start, end, repeats)`` as fractions
    of the steps, or None (off; the official scripts use :data:`OFFICIAL_SELF_RECURRENCE`, the pipeline's own
    default is off). ``eta``: DDIM stochasticity (the scripts' 1.0; the pipeline's default 0.0)."""

    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    structure_guidance_scale: float | None = None     # CFG of a generated structure branch (None: guidance_scale)
    appearance_guidance_scale: float | None = None    # CFG of a generated appearance branch (None: guidance_scale)
    structure_schedule: float = 0.6
    appearance_schedule: float = 0.6
    eta: float = 1.0
    self_recurrence: tuple[float, float, int] | None = None
    positive_prompt: str = POSITIVE_PROMPT
    negative_prompt: str = NEGATIVE_PROMPT
    size: int | None = None                           # long side in pixels; None: the model's native size

    def validate(self) -> "CtrlXConfig":
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise UsageError(message)

        check(1 <= self.num_inference_steps <= 1000, "--steps must be between 1 and 1000")
        check(self.guidance_scale >= 0, "--guidance-scale must not be negative")
        check(0 <= self.structure_schedule <= 1, "--structure-schedule must be between 0 and 1")
        check(0 <= self.appearance_schedule <= 1, "--appearance-schedule must be between 0 and 1")
        check(0 <= self.eta <= 1, "--eta must be between 0 and 1")
        check(self.size is None or self.size >= 8, "--size must be at least 8 pixels")
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


METHOD = "ctrlx"


def model_config(model: str | Path | None) -> CtrlXConfig:
    """The official defaults with ``model``'s recommended settings (``i2i_ctrlx.json`` in its folder) applied."""
    from i2i.diffusion.settings import apply_recommended, read_recommended

    recommended = read_recommended(model, METHOD, CtrlXConfig)
    if recommended.get("self_recurrence") is not None:
        recommended = {**recommended, "self_recurrence": tuple(recommended["self_recurrence"])}
    return apply_recommended(CtrlXConfig(), recommended)


# What a Ctrl-X job (a JSONL line) may hold; the branches can be saved beside each image.
CTRLX_JOBS = JobSchema(images=("structure", "appearance"), options=("structure_prompt", "appearance_prompt"),
                       extras=("structure_branch", "appearance_branch"))
