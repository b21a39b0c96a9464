"""The Ctrl-X pipeline (Lin, Mo et al., NeurIPS 2024) on diffusers components, for SD 1.x / 2.x and SDXL: structure
and appearance control with no inversion, no guidance gradient and no training.

Load once, call many times::

    pipe = CtrlXPipeline.from_pretrained("stabilityai/stable-diffusion-xl-base-1.0", device="cuda", precision="fp16")
    out = pipe("a photo of a tiger", structure="pose.png", appearance="tiger.jpg", seed=90095)
    out.images[0].save("tiger.png")

Each step makes one batched UNet call on up to three branches: the **structure** image and the **appearance** image,
each forward-noised to the current timestep, and the **output**. Hooks (:mod:`i2i.ctrlx.control`) copy the structure
row's conv features and self-attention queries/keys into the output's conditional row on the first
``structure_schedule`` of the steps, and re-normalise its self-attention inputs with the appearance row's
attention-weighted statistics on the first ``appearance_schedule``. After each DDIM step the reference branches are
re-noised to the next timestep with the scheduler's own ``add_noise`` and fresh noise. Without an appearance image
the appearance branch is generated from the prompt alongside (its own CFG) and transferred all the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from PIL import Image, ImageOps

from i2i.ctrlx.config import CTRLX, DEFAULT_SEED, CtrlXConfig
from i2i.ctrlx.control import ROW_ORDER, ControlState, controlled
from i2i.ctrlx.layers import ControlLayers, control_layers
from i2i.diffusion.cache import progress_bar
from i2i.diffusion.conditioning import Conditioning
from i2i.diffusion.jobs import JobResult
from i2i.diffusion.model import DiffusionModel
from i2i.errors import UsageError
from i2i.images import convert_image

if TYPE_CHECKING:
    from i2i.progress import Reporter

BRANCHES = ("structure", "appearance")


@dataclass
class CtrlXOutput:
    """Result of one call: PIL lists of length ``num_images``. ``structure`` / ``appearance``: the branches as the
    model saw them (the decoded clean latent of a given image, else the branch generated from the prompt); empty
    when the call was made with ``decode_branches=False``."""

    images: list[Image.Image]
    structure: list[Image.Image]
    appearance: list[Image.Image]
    latents: torch.Tensor
    timesteps: list[int]
    structure_steps: int
    appearance_steps: int
    rows: list[list[str]] = field(default_factory=list)     # the batch rows of each step (first image)


@dataclass
class _Branch:
    """A reference branch: its clean latent (None: generated from the prompt), its latent now, its text."""

    clean: torch.Tensor | None
    latent: torch.Tensor
    text: Conditioning
    guidance: float
    steps: int             # control steps (the branch's rows are dropped after them)
    deferred: list[torch.Tensor] = field(default_factory=list)   # a generated branch's DDIM noise after them

    def active(self, i: int) -> bool:
        return i < self.steps


def fit_image(image: Image.Image, shape: tuple[int, int]) -> Image.Image:
    """``image`` as RGB, centre-cropped to the aspect of ``shape`` = ``(h, w)`` and resized to it (bicubic)."""
    return ImageOps.fit(convert_image(image), (shape[1], shape[0]), Image.Resampling.BICUBIC)


def renoise(scheduler, clean: torch.Tensor, timestep: int, generator: torch.Generator) -> torch.Tensor:
    """The forward process to ``timestep`` with fresh noise: the scheduler's own ``add_noise``."""
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32).to(clean.device)
    return scheduler.add_noise(clean, noise, torch.tensor([int(timestep)], device=clean.device))


class CtrlXPipeline(DiffusionModel):
    """Ctrl-X on a diffusers Stable Diffusion (1.x / 2.x) or SDXL pipeline; ``layers`` overrides the control
    layers (default: :func:`i2i.ctrlx.layers.control_layers`)."""

    method = CTRLX

    def __init__(self, base, *args, layers: ControlLayers | None = None, **kwargs) -> None:
        super().__init__(base, *args, **kwargs)
        self.layers = layers or control_layers(self.unet)

    @torch.no_grad()
    def __call__(self, prompt: str, structure: Image.Image | str | os.PathLike | None = None,
                 appearance: Image.Image | str | os.PathLike | None = None, config: CtrlXConfig | None = None, *,
                 structure_prompt: str | None = None, appearance_prompt: str | None = None,
                 seed: int = DEFAULT_SEED, num_images: int = 1, latents: torch.Tensor | None = None,
                 decode_branches: bool = True, reporter: "Reporter | None" = None) -> CtrlXOutput:
        """Generate ``num_images`` images for ``prompt`` with ``structure``'s layout and ``appearance``'s look (the
        prompt's when None). The output takes the structure image's aspect ratio. ``structure_prompt`` /
        ``appearance_prompt`` describe the branches (default: the prompt). ``latents`` ``[N, c, h, w]``
        replaces the seeded initial noise. Images are generated one at a time (the official batch size 1).
        ``decode_branches=False`` leaves ``structure`` / ``appearance`` of the output empty (two VAE decodes
        fewer per image)."""
        if not str(prompt).strip():
            raise UsageError("the prompt is empty")
        start = self.start(config, dict(zip(BRANCHES, (structure, appearance))), seed, num_images, latents, reporter)
        config, images, shape, noise = start.config, start.images, start.shape, start.noise
        for name in BRANCHES:
            schedule = getattr(config, f"{name}_schedule")
            if images[name] is not None and config.control_steps(schedule) == 0:
                self._warn(reporter, f"the {name} image is ignored: {name}_schedule {schedule} controls none of the "
                           f"{config.num_inference_steps} steps (--{name}-schedule)", depth=2)   # past no_grad
        generator, scheduler = start.generator, start.scheduler
        texts = self._texts(prompt, structure_prompt, appearance_prompt, config, shape, reporter)
        outputs, rows = [], []
        with controlled(self.unet, self.layers, ControlState(correspondence=config.correspondence)) as state, \
                progress_bar(reporter, noise.shape[0] * len(scheduler.timesteps), "ctrlx") as advance:
            for k in range(noise.shape[0]):
                branches = {name: self._branch(images[name], shape, noise[k:k + 1], texts[name], config, name,
                                               generator) for name in BRANCHES}
                x, steps_rows = self._sample(noise[k:k + 1], branches, texts["output"], scheduler, config, state,
                                             generator, advance)
                outputs.append((x, branches))
                rows = rows or steps_rows
        latents_out = torch.cat([x for x, _ in outputs])
        if decode_branches:
            for _, branches in outputs:
                for branch in branches.values():
                    self._finish(branch, scheduler, config)
        decoded = {name: [self.decode(b[name].clean if b[name].clean is not None else b[name].latent)[0]
                          for _, b in outputs] if decode_branches else [] for name in BRANCHES}
        return CtrlXOutput(self.decode(latents_out), decoded["structure"], decoded["appearance"], latents_out.cpu(),
                           [int(t) for t in scheduler.timesteps], config.control_steps(config.structure_schedule),
                           config.control_steps(config.appearance_schedule), rows)

    def run_job(self, job: dict, images: dict, config: CtrlXConfig, extras: tuple[str, ...] = (),
                reporter: "Reporter | None" = None) -> JobResult:
        """One job of the shared loop (:func:`i2i.diffusion.jobs.run_jobs`): ``job`` holds the prompt, seed, number
        of images and the branch prompts, ``images`` its structure (and appearance); ``extras`` may ask for the
        ``"structure_branch"`` and ``"appearance_branch"`` pictures."""
        result = self(job["prompt"], images["structure"], images.get("appearance"), config,
                      structure_prompt=job["structure_prompt"], appearance_prompt=job["appearance_prompt"],
                      seed=job["seed"], num_images=job["num_images"], decode_branches=bool(extras), reporter=reporter)
        branches = {"structure_branch": result.structure, "appearance_branch": result.appearance}
        return JobResult(result.images, {k: v for k, v in branches.items() if k in extras},
                         {"structure_steps": result.structure_steps, "appearance_steps": result.appearance_steps})

    # ------------------------------------------------------------------ set-up
    def _texts(self, prompt: str, structure_prompt: str | None, appearance_prompt: str | None, config: CtrlXConfig,
               shape: tuple[int, int], reporter: "Reporter | None") -> dict[str, Conditioning]:
        """Conditionings of the output and the branches (each with the negative prompt): the output prompt and a
        non-empty appearance prompt get the positive suffix; an empty branch prompt reuses the output's."""
        suffix = f", {config.positive_prompt}" if config.positive_prompt else ""
        wanted = {"output": prompt + suffix,
                  "structure": structure_prompt or None,
                  "appearance": appearance_prompt + suffix if appearance_prompt else None}
        for name, text in (("the prompt", wanted["output"]), ("the negative prompt", config.negative_prompt)):
            self.check_prompt_length(text, name, reporter, depth=4)   # the caller of __call__ (under no_grad)
        out = self.encode_text([wanted["output"]], shape, negative=config.negative_prompt)
        return {name: out if text is None or name == "output" else
                self.encode_text([text], shape, negative=config.negative_prompt) for name, text in wanted.items()}

    def _branch(self, image: Image.Image | None, shape: tuple[int, int], x_T: torch.Tensor, text: Conditioning,
                config: CtrlXConfig, name: str, generator: torch.Generator) -> _Branch:
        """A branch starting from the output's x_T (official: step 0 uses x_T for every branch)."""
        clean = None if image is None else self.encode_image(fit_image(image, shape), generator).float()
        scale = getattr(config, f"{name}_guidance_scale")
        return _Branch(clean, x_T.clone(), text, config.guidance_scale if scale is None else scale,
                       config.control_steps(getattr(config, f"{name}_schedule")))

    # ------------------------------------------------------------------ sampling
    def _sample(self, x: torch.Tensor, branches: dict[str, _Branch], text: Conditioning, scheduler,
                config: CtrlXConfig, state: ControlState, generator: torch.Generator, advance
                ) -> tuple[torch.Tensor, list[list[str]]]:
        timesteps = scheduler.timesteps
        recurrence = config.recurrence_steps()
        repeats = int(config.self_recurrence[2]) if config.self_recurrence else 0
        s_steps = config.control_steps(config.structure_schedule)
        a_steps = config.control_steps(config.appearance_schedule)
        seen = []
        for i, t in enumerate(timesteps):
            names = self._rows(branches, i)
            seen.append(names)
            state.rows, state.enabled = names, True
            state.structure, state.appearance = i < s_steps, i < a_steps
            eps = self._predict(names, x, branches, text, t, config.guidance_scale)
            live = [name for name in BRANCHES if branches[name].active(i)]
            stacked = torch.cat([branches[n].latent for n in live] + [x])
            noise = self._step_noise(branches, live, x, config.eta, generator)
            step = scheduler.step(torch.cat([eps[n] for n in live] + [eps["output"]]), t, stacked,
                                  eta=config.eta, variance_noise=noise).prev_sample
            x = step[-1:]
            for j, name in enumerate(live):
                branches[name].latent = step[j:j + 1]
            nxt = timesteps[i + 1] if i + 1 < len(timesteps) else None
            for branch in branches.values():
                if branch.clean is not None:
                    branch.latent = branch.clean if nxt is None else renoise(scheduler, branch.clean, nxt, generator)
            if i in recurrence:
                x = self._recur(x, t, nxt, text, scheduler, config, state, generator, repeats)
            advance(1)
        return x, seen

    @staticmethod
    def _step_noise(branches: dict[str, _Branch], live: list[str], x: torch.Tensor, eta: float,
                    generator: torch.Generator) -> torch.Tensor | None:
        """DDIM's noise for this step's rows (``live`` branches, then the output), drawn as the official batch
        draws it, which also holds every generated branch: the random stream, and so the output, stay the
        official ones; a generated branch that has left the batch keeps its row for :meth:`_finish`. None when
        ``eta`` is 0 (no noise)."""
        if eta == 0:
            return None
        official = [n for n in BRANCHES if branches[n].clean is None or n in live]
        noise = torch.randn((len(official) + 1, *x.shape[1:]), generator=generator, dtype=torch.float32)
        for j, name in enumerate(official):
            if name not in live:
                branches[name].deferred.append(noise[j:j + 1])
        return noise[[official.index(n) for n in live] + [len(official)]].to(x.device)

    @staticmethod
    def _rows(branches: dict[str, _Branch], i: int) -> list[str]:
        """The batch rows at step ``i``: while a branch is active, its cond row and, when it is generated (no image),
        its uncond row; and the output's uncond and cond rows, in :data:`ROW_ORDER`."""
        names = {"uncond", "cond"}
        for name, branch in branches.items():
            if branch.active(i):
                names.add(f"{name}_cond")
                if branch.clean is None:
                    names.add(f"{name}_uncond")
        return [n for n in ROW_ORDER if n in names]

    def _predict(self, names: list[str], x: torch.Tensor, branches: dict[str, _Branch], text: Conditioning, t,
                 scale: float) -> dict[str, torch.Tensor]:
        """One UNet call on the rows ``names``; the CFG prediction of the output and of each active branch."""
        def row(name: str) -> tuple[torch.Tensor, Conditioning]:
            owner, kind = name.rsplit("_", 1) if name not in ("uncond", "cond") else ("output", name)
            latent = x if owner == "output" else branches[owner].latent
            cond = text if owner == "output" else branches[owner].text
            return latent, cond.negative if kind == "uncond" else cond.positive()

        parts = [row(n) for n in names]
        out = self.unet_forward(torch.cat([p[0] for p in parts]), t, Conditioning.stack([p[1] for p in parts]))
        pred = {n: out[j:j + 1] for j, n in enumerate(names)}
        eps = {"output": pred["uncond"] + scale * (pred["cond"] - pred["uncond"])}
        for name, branch in branches.items():
            if f"{name}_cond" in pred:
                cond = pred[f"{name}_cond"]
                uncond = pred.get(f"{name}_uncond")
                eps[name] = cond if uncond is None else uncond + branch.guidance * (cond - uncond)
            else:
                eps[name] = eps["output"]
        return eps

    def _finish(self, branch: _Branch, scheduler, config: CtrlXConfig) -> None:
        """Sample a generated branch on to the end (plain CFG at its own scale, control off), for its picture only.

        The official pipeline keeps a generated branch in the batch for every step although the output reads it
        only during its schedule; here it leaves the batch after its schedule (one image costs fewer UNet rows; the
        output is the official one up to float rounding, as :meth:`_step_noise` keeps the random stream) and is
        finished here, with the DDIM noise the official batch would have given it, only when its picture is asked
        for."""
        if branch.clean is not None:
            return
        for j, t in enumerate(scheduler.timesteps[branch.steps:]):
            eps = self.cfg_noise(branch.latent, t, branch.text, branch.guidance)
            noise = branch.deferred[j].to(eps.device) if branch.deferred else None
            branch.latent = scheduler.step(eps, t, branch.latent, eta=config.eta, variance_noise=noise).prev_sample

    def _recur(self, x: torch.Tensor, t, t_next, text: Conditioning, scheduler, config: CtrlXConfig,
               state: ControlState, generator: torch.Generator, repeats: int) -> torch.Tensor:
        """Self-recurrence: ``repeats`` times, re-noise the output from the next timestep back to ``t`` and redo
        the step with plain CFG (control off)."""
        alphas = scheduler.alphas_cumprod.to(x.device)
        a_t = alphas[int(t)]
        a_next = alphas[int(t_next)] if t_next is not None else scheduler.final_alpha_cumprod.to(x.device)
        state.rows, state.enabled = ["uncond", "cond"], False
        for _ in range(repeats):
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)
            ratio = a_t / a_next
            x = ratio.sqrt() * x + (1 - ratio).sqrt() * noise
            eps = self.cfg_noise(x, t, text, config.guidance_scale)
            x = scheduler.step(eps, t, x, eta=config.eta, generator=generator).prev_sample
        return x
