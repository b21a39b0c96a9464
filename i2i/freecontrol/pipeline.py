"""The FreeControl pipeline (Mo et al., CVPR 2024) on diffusers components, for SD 1.x / 2.x (epsilon and
v-prediction) and SDXL.

Load once, call many times::

    pipe = FreeControlPipeline.from_pretrained("runwayml/stable-diffusion-v1-5", device="cuda", precision="fp16")
    out = pipe("a photo of a lion", Image.open("sketch.png"), inversion_prompt="a sketch of a dog",
               subject="dog;lion", seed=2028)
    out.images[0].save("lion.png"); out.unguided[0].save("lion_unguided.png")

One call:

1. the condition is resized (its aspect ratio kept), VAE-encoded and DDIM-inverted with the inversion prompt
   (cached on disk);
2. semantic bases for the concept come from the cache or the analysis stage (:mod:`i2i.freecontrol.bases`);
3. once per guided timestep, the condition's keys (and its subject cross-attention, for the mask) are computed
   from the cached trajectory with a UNet pass cut short after the feature block;
4. sampling runs the guided sample and its unguided sibling (same initial noise) with classifier-free guidance;
   inside the guidance window the guided sample's prompt row records gradients up to the last key layer (in the
   same UNet call as the other rows, or in one of its own: ``one_call``), so the same pass gives its prediction
   and the keys of the structure and appearance energies, and one gradient per step w.r.t. the latent is applied
   as the official scheduler does. The sibling stops after the window unless it is asked for;
5. with an appearance image, the image is inverted (cached) and, per guided timestep, its keys (one truncated
   pass on its inverted latent with the prompt) give the appearance energy's reference in place of the
   sibling's, which then runs only when asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from i2i.diffusion.cache import progress_bar
from i2i.diffusion.conditioning import Conditioning
from i2i.diffusion.inversion import Trajectory, invert_condition
from i2i.diffusion.jobs import JobResult
from i2i.diffusion.model import DiffusionModel, Start
from i2i.errors import CheckpointError, UsageError
import i2i.freecontrol.guidance as G
from i2i.freecontrol.bases import SemanticBases, cached_bases, read_bases_file
from i2i.freecontrol.config import DEFAULT_SEED, FREECONTROL, BasesConfig, FreeControlConfig
from i2i.freecontrol.features import (FeatureStore, block_attention_layers, default_feature_block,
                                      prompt_token_indices, recording, run_until_recorded, subject_token_indices)
from i2i.text import words

if TYPE_CHECKING:
    from i2i.progress import Reporter


@dataclass
class FreeControlOutput:
    """Result of one call. Images: PIL lists of length ``num_images``; latents ``[N, c, h, w]`` (CPU)."""

    images: list[Image.Image]
    unguided: list[Image.Image]
    latents: torch.Tensor
    unguided_latents: torch.Tensor | None         # None when the siblings were not asked for
    initial_latents: torch.Tensor                 # where the guided sample started (x_T^g with img2img)
    timesteps: list[int]
    guided_steps: int
    skipped_steps: list[int] = field(default_factory=list)   # guided steps skipped for a non-finite gradient
    mask: torch.Tensor | None = None              # the last subject mask, [h, w] at the feature resolution
    trajectory: Trajectory | None = None
    bases: SemanticBases | None = None
    energies: list[float] = field(default_factory=list)      # total energy per guided step (NaN when skipped)
    appearance_trajectory: Trajectory | None = None          # the appearance image's inversion, when one was given


def parse_subject(subject: str | None) -> tuple[str | None, str | None]:
    """``"dog;lion"`` / ``"(dog; lion)"`` -> ``("dog", "lion")``; ``"dog"`` -> ``("dog", None)``; None -> (None, None).

    The first word is found in the inversion prompt (for the mask); the second names the generated concept."""
    if subject is None or not subject.strip():
        return None, None
    parts = [p.strip() for p in subject.strip().strip("()").split(";")]
    if len(parts) > 2 or not parts[0]:
        raise UsageError(f"--subject {subject!r}: use 'CONDITION_WORD' or 'CONDITION_WORD;GENERATED_WORD'")
    return parts[0], (parts[1] or None) if len(parts) == 2 else None


def check_subject(subject: str | None, inversion_prompt: str) -> None:
    """:class:`UsageError` for a ``subject`` that cannot be found in ``inversion_prompt`` (checked on the text,
    before a tokenizer is at hand; the tokens are matched when the job runs)."""
    ref, _ = parse_subject(subject)
    if ref is not None and " ".join(ref.lower().split()) not in " ".join(inversion_prompt.lower().split()):
        raise UsageError(f"--subject {subject!r}: {ref!r} does not occur in the inversion prompt "
                         f"{inversion_prompt!r} (the mask is its cross-attention there)")


def default_concept(prompt: str, subject: str | None = None) -> str:
    """The concept to analyse: the generated word of ``subject``, else the last word (letters, as
    :func:`i2i.text.words` reads words) of the prompt's first comma-separated piece that has one ("a photo of a
    lion, in the desert" -> "lion", ", a red circle 🟥" -> "circle")."""
    ref, gen = parse_subject(subject)
    if gen:
        return gen
    for piece in prompt.split(","):
        if found := words(piece):
            return found[-1]
    raise UsageError(f"the prompt {prompt!r} has no word to take the concept of the semantic bases from: give "
                     "--concept WORD")


def _mask_picture(mask: torch.Tensor | None, latents: torch.Tensor) -> torch.Tensor | None:
    """The subject mask ``[HW]`` as ``[h, w]`` at the feature block's resolution (the latent's, downsampled)."""
    if mask is None:
        return None
    lh, lw = latents.shape[-2:]
    scale = (mask.numel() / (lh * lw)) ** 0.5
    return mask.reshape(int(round(lh * scale)), -1).cpu()


def default_one_call(device: torch.device, is_sdxl: bool) -> bool:
    """Whether a guided step makes one UNet call by default: on CUDA for SD 1.x/2.x only (see
    :class:`FreeControlPipeline`)."""
    return device.type == "cuda" and not is_sdxl


@dataclass
class _Plan:
    """What one :meth:`FreeControlPipeline.__call__` prepares before its denoising loop."""

    scheduler: object
    shape: tuple[int, int]
    n_guided: int = 0
    need_condition: bool = False
    trajectory: Trajectory | None = None
    bases: SemanticBases | None = None
    layers: list[str] = field(default_factory=list)
    cond_feats: list | None = None
    text: Conditioning | None = None
    app_feats: list | None = None
    app_traj: Trajectory | None = None

    @property
    def timesteps(self) -> torch.Tensor:
        return self.scheduler.timesteps

    @property
    def ts(self) -> list[int]:
        return [int(t) for t in self.scheduler.timesteps]


class FreeControlPipeline(DiffusionModel):
    """FreeControl on a diffusers Stable Diffusion (1.x / 2.x) or SDXL pipeline.

    ``base`` is a ``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline`` whose components (UNet, VAE, text
    encoders, tokenizers, ``encode_prompt``) are reused; sampling uses a ``DDIMScheduler`` and inversion a
    ``DDIMInverseScheduler``, both made from the model's scheduler config. ``model_id`` names the weights
    (``NAME@FINGERPRINT`` when loaded; the cache keys use what follows the @, so one model under two names shares
    its entries; default: a fingerprint of the weights).

    ``one_call`` picks how a guided step spends its UNet work (the result is the same up to rounding): True, one
    call on all rows with gradients recorded up to the feature block; False, a call on the rows that need no
    gradient plus one on the guided row with gradients. None: one call on CUDA for SD 1.x/2.x (an SD-1.5-shaped
    UNet at 512 px on an H200: 1.8x plain sampling instead of 2.6x), two calls for SDXL (one call keeps the
    activations of 4 rows through 30 transformer layers for the backward pass: 22.8 GB peak instead of 11.6 GB
    at 1024 px) and on a CPU (about equal there). Measured with
    ``examples/benchmarks/freecontrol_speed.py --one-call both``.
    """

    def __init__(self, base, model_id: str | None = None, device: str | torch.device | None = None,
                 precision: str = "fp32", cache_dir: str | Path | None = None, one_call: bool | None = None,
                 model_folder: str | Path | None = None, **kwargs) -> None:
        super().__init__(base, model_id, device, precision, cache_dir, model_folder, **kwargs)
        self.one_call = default_one_call(self.device, self.is_sdxl) if one_call is None else one_call
        self.feature_block = default_feature_block(self.unet)
        self._condition_memo: dict[tuple, tuple] = {}
        self._appearance_memo: dict[tuple, tuple] = {}
        self._bases_file: tuple = (None, None)          # (path, SemanticBases) of run_job's bases file
        self._fitting_bases: SemanticBases | None = None  # the last bases found to fit this UNet
        self._components_noted: tuple | None = None        # (bases, counts) last checked by _note_components

    method = FREECONTROL

    # ------------------------------------------------------------------ stages
    def invert(self, condition: Image.Image, prompt: str, config: FreeControlConfig, timesteps: list[int],
               reporter: "Reporter | None" = None) -> Trajectory:
        size = self.check_size(config.size or self.default_size)
        return invert_condition(self, condition, prompt, self.output_shape(condition.size, size), timesteps,
                                config.inversion_steps, self.cache_dir, reporter)

    def semantic_bases(self, concept: str, config: BasesConfig | None = None, size: int | None = None,
                       reporter: "Reporter | None" = None, images: list | None = None) -> SemanticBases:
        """Bases for ``concept`` from the cache, or computed by the analysis stage and cached. ``images``: the
        concept's images already read by :func:`~i2i.freecontrol.bases.read_concept_images` (default: read from
        ``config.images`` when ``config.source`` is ``"images"``)."""
        defaults = self.default_config() if config is None or config.inversion_steps is None else None
        config = config or defaults.bases
        if config.inversion_steps is None:      # (used by the sources that invert images)
            config = dataclasses.replace(config, inversion_steps=defaults.inversion_steps)
        size = self.check_size(size or config.size or self.default_size)
        return cached_bases(self, concept, config, size, self.cache_dir, reporter, images)

    def _check_bases(self, bases: SemanticBases) -> list[str]:
        """The bases' layers, or :class:`CheckpointError` when the bases are unusable or do not fit this UNet
        (checked once per bases object: a batch that reuses them pays for one pass over their values)."""
        if self._fitting_bases is not bases:
            source = bases.path or "the semantic bases"
            bases.checked(source)
            if (problem := bases.fit_problem(self.unet)) is not None:
                raise CheckpointError(f"{source}: the semantic bases do not fit this model: {problem}")
            self._fitting_bases = bases
        return list(bases.layers)

    def _note_components(self, bases: SemanticBases, config: FreeControlConfig, reporter: "Reporter | None") -> None:
        """Warn (once per bases object and counts) when ``--components`` asks for more components than the bases
        hold, fewer than their key width (a file made with fewer), or ``--appearance-components`` for more than are
        in use: the energies use what there is, as the official code's slices do."""
        counts, noted = (config.n_components, config.appearance_components), self._components_noted
        if noted is not None and noted[0] is bases and noted[1] == counts:
            return
        self._components_noted = (bases, counts)
        held = bases.n_components
        used = min(config.n_components, held)
        if config.n_components > held and held < bases.bases.shape[3]:    # (not when every channel is a component)
            self._warn(reporter, f"--components {config.n_components} is more than the {held} principal components "
                       f"the semantic bases hold ({bases.path or 'computed here'}); {held} are used", depth=3)
        if config.appearance_components > used:
            self._warn(reporter, f"--appearance-components {config.appearance_components} is more than the {used} "
                       f"components in use; {used} are used", depth=3)

    @torch.no_grad()
    def condition_features(self, trajectory: Trajectory, timesteps: list[int], cond: Conditioning,
                           bases: SemanticBases, layers: list[str], config: FreeControlConfig,
                           token_indices: list[int] | None,
                           reporter: "Reporter | None" = None) -> list[tuple[list[torch.Tensor], torch.Tensor | None]]:
        """Per guided timestep: the condition's normalised coordinates per layer (``[HW, K]`` each) and the subject
        mask ``[HW]`` (None without a mask). One truncated UNet pass per timestep, on the cached trajectory."""
        key = (trajectory.cache_path or id(trajectory), tuple(timesteps), bases.path or id(bases), tuple(layers),
               config.n_components, config.mask_threshold, tuple(token_indices or ()))
        if key in self._condition_memo:
            return self._condition_memo[key][0]
        _, attn2 = block_attention_layers(self.unet, config.bases.block or self.feature_block)
        use_mask = token_indices is not None
        prob_sum, prob_count = None, 0
        result = []
        for t, store in self._feature_passes(trajectory, timesteps, cond, layers, attn2 if use_mask else [],
                                             "condition features", reporter):
            coords = []
            for j, name in enumerate(layers):
                mean, basis = bases.at(t, j, self.device)
                s = G.semantic_coordinates(store.keys[name], mean, basis, config.n_components)
                coords.append(G.minmax_normalize(s)[0])
            mask = None
            if use_mask:
                prob_sum = store.prob_sum[0] if prob_sum is None else prob_sum + store.prob_sum[0]
                prob_count += store.prob_count
                mask = G.cross_attention_mask(prob_sum / prob_count, token_indices, config.mask_threshold)
            result.append((coords, mask))
        # the memo keeps the trajectory and bases alive, so that an id() in its key cannot be reused meanwhile
        self._condition_memo = {key: (result, trajectory, bases)}
        return result

    def _feature_passes(self, trajectory: Trajectory, timesteps: list[int], cond: Conditioning, layers: list[str],
                        prob_layers: list[str], what: str, reporter: "Reporter | None"):
        """Per timestep ``t``: ``(t, store)`` after one UNet pass on the trajectory's ``x_t`` with ``cond``, cut
        short after the last recorded layer; ``store`` holds the keys of ``layers`` (and the cross-attention of
        ``prob_layers``)."""
        store = FeatureStore(record_probs=bool(prob_layers), stop_after=(prob_layers or layers)[-1])
        with recording(self.unet, store, layers, prob_layers), progress_bar(reporter, len(timesteps), what) as advance:
            for t in timesteps:
                store.clear()
                run_until_recorded(self.unet, store, trajectory.at(t).to(self.device, self.dtype), t,
                                   **cond.unet_kwargs())
                yield t, store
                advance(1)

    def _appearance_vectors(self, keys: torch.Tensor, t, j: int, bases: SemanticBases,
                            config: FreeControlConfig) -> torch.Tensor:
        """Appearance vectors ``[B, N_a, C]`` of keys ``[B, HW, C]`` of layer ``j`` at timestep ``t``."""
        mean, basis = bases.at(t, j, self.device)
        coords = G.minmax_normalize(G.semantic_coordinates(keys, mean, basis, config.n_components))
        return G.appearance_vectors(keys, coords, config.appearance_components, config.appearance_threshold)

    @torch.no_grad()
    def appearance_features(self, trajectory: Trajectory, timesteps: list[int], cond: Conditioning,
                            bases: SemanticBases, layers: list[str], config: FreeControlConfig,
                            reporter: "Reporter | None" = None) -> list[list[torch.Tensor]]:
        """Per guided timestep, per layer: the appearance vectors ``[1, N_a, C]`` of an appearance image from its
        inverted trajectory (a UNet pass with the prompt ``cond``, cut short after the feature block): the
        reference of the appearance energy in place of the unguided sibling's."""
        key = (hash(trajectory.latents.numpy().tobytes()), tuple(timesteps), bases.path or id(bases), tuple(layers),
               config.n_components, config.appearance_components, config.appearance_threshold,
               hash(cond.embeds.float().cpu().numpy().tobytes()))
        if key in self._appearance_memo:
            return self._appearance_memo[key][0]
        result = [[self._appearance_vectors(store.keys[name].float(), t, j, bases, config)
                   for j, name in enumerate(layers)]
                  for t, store in self._feature_passes(trajectory, timesteps, cond, layers, [],
                                                       "appearance features", reporter)]
        self._appearance_memo = {key: (result, bases)}      # bases kept alive: its id() may be in the key
        return result

    # ------------------------------------------------------------------ synthesis
    def __call__(self, prompt: str, condition: Image.Image | str | os.PathLike,
                 config: FreeControlConfig | None = None, *, inversion_prompt: str | None = None,
                 subject: str | None = None, concept: str | None = None, seed: int = DEFAULT_SEED, num_images: int = 1,
                 bases: SemanticBases | None = None, latents: torch.Tensor | None = None, unguided: bool = True,
                 appearance: Image.Image | str | os.PathLike | None = None, appearance_prompt: str | None = None,
                 reporter: "Reporter | None" = None) -> FreeControlOutput:
        """Generate ``num_images`` images for ``prompt`` following ``condition``'s structure, plus the unguided
        siblings (same initial noise, no guidance). ``config``: default :meth:`default_config` (the official
        defaults with the model's recommended settings).

        The siblings run alongside as long as the appearance energy reads their keys (the guidance window);
        with ``unguided=False`` they stop there and ``FreeControlOutput.unguided`` is empty (the CLI without
        ``--save-unguided``: fewer UNet rows after the window).

        ``inversion_prompt`` describes the condition (default: ``prompt``); ``subject`` is ``"ref;gen"`` with ``ref``
        a word of the inversion prompt whose cross-attention gives the mask (default: all of its words);
        ``concept`` picks the bases (default: see :func:`default_concept`); ``bases`` overrides them. ``latents``
        ``[N, c, h, w]`` replaces the seeded initial noise.

        ``appearance``: an image whose look the output takes. It is DDIM-inverted (cached, like the condition,
        with ``appearance_prompt``, default: ``prompt``) and at each guided step its appearance vectors (from its
        inverted latent at that timestep, with the prompt) are the appearance energy's reference instead of the
        unguided sibling's; the siblings then run only when ``unguided`` asks for them.
        """
        start = self.start(config, {"condition": condition, "appearance": appearance}, seed, num_images, latents,
                           reporter)
        config, noise = start.config, start.noise
        plan = self._prepare(prompt, start, inversion_prompt, subject, concept, bases, appearance_prompt, reporter)
        n_guided, ts, scheduler = plan.n_guided, plan.ts, plan.scheduler
        x_c, x_a = self._initial_latents(plan, config, noise)
        initial = x_c.detach().cpu().clone()
        separate = plan.need_condition     # without guidance or img2img the guided sample *is* the unguided one
        n = start.num_images
        skipped, energies, mask = [], [], None     # skipped steps, energy per guided step, the last subject mask

        # The recording processors are installed once for the whole loop (installing them costs a walk over
        # every module); between the calls that record, ``live`` records nothing and they compute plain attention.
        live = FeatureStore(record_keys=False)
        with progress_bar(reporter, len(ts), "freecontrol") as advance, \
                (recording(self.unet, live, plan.layers) if n_guided else contextlib.nullcontext()):
            for i, t in enumerate(plan.timesteps):
                weight = G.warmup_weight(i, config.structure_weight, config.warmup_steps) if i < n_guided else 0.0
                sibling = separate and (unguided or (i < n_guided and config.appearance_weight > 0
                                                     and plan.app_feats is None))
                grad = None
                if weight > 0:
                    coords_g, mask = plan.cond_feats[i]
                    eps_c, eps_a, grad, energy = self._guided_step(
                        x_c, x_a if sibling else None, t, plan.text, plan.layers, plan.bases, coords_g, mask, weight,
                        config, live, None if plan.app_feats is None else plan.app_feats[i])
                    energies.append(energy)
                else:
                    x = torch.cat([x_c, x_a]) if sibling else x_c
                    with torch.no_grad():
                        eps = self.cfg_noise(x, t, plan.text.expand(x.shape[0]), config.guidance_scale)
                    eps_c, eps_a = (eps[:n], eps[n:]) if sibling else (eps, None)
                if sibling:
                    prev = scheduler.step(torch.cat([eps_c, eps_a]), t, torch.cat([x_c, x_a])).prev_sample
                    prev_c, x_a = prev[:n], prev[n:]
                else:
                    prev_c = scheduler.step(eps_c, t, x_c).prev_sample
                del eps_c, eps_a
                if weight > 0 and grad is None:
                    skipped.append(i)
                    self._warn(reporter, f"step {i} (t={int(t)}): the guidance gradient is not finite; "
                               "guidance skipped for this step")
                elif weight > 0:
                    prev_c = self._apply_guidance(scheduler, prev_c, grad, int(t))
                x_c = prev_c.detach()
                advance(1)

        images = self.decode(x_c)
        if not separate:
            x_a = x_c
        siblings = (self.decode(x_a) if separate else list(images)) if unguided else []
        return FreeControlOutput(images, siblings, x_c.cpu(), x_a.cpu() if unguided else None, initial, ts,
                                 n_guided, skipped, _mask_picture(mask, x_c), plan.trajectory,
                                 plan.bases if n_guided else None, energies, plan.app_traj)

    @staticmethod
    def _initial_latents(plan: _Plan, config: FreeControlConfig, noise: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Where the guided sample and its unguided sibling start: the noise, or with img2img the condition's
        inverted latent for the guided one (and the sibling too with ``appearance_same_latent``)."""
        x_a = noise.clone()
        x_c = plan.trajectory.at(plan.ts[0]).to(noise.device).expand_as(noise).clone() if config.img2img \
            else noise.clone()
        if config.img2img and config.appearance_same_latent:
            x_a = x_c.clone()
        return x_c, x_a

    def run_job(self, job: dict, images: dict, config: FreeControlConfig, extras: tuple[str, ...] = (),
                reporter: "Reporter | None" = None, bases: SemanticBases | str | os.PathLike | None = None
                ) -> JobResult:
        """One job of the shared loop (:func:`i2i.diffusion.jobs.run_jobs`): ``job`` holds the prompt, seed, number
        of images and :data:`~i2i.freecontrol.config.FREECONTROL_JOBS`' options, ``images`` its condition (and
        appearance); ``extras`` may ask for the ``"unguided"`` siblings; ``bases`` (or a bases file, read once)
        overrides the cached ones."""
        if bases is not None and not isinstance(bases, SemanticBases):
            if self._bases_file[0] != bases:
                read = read_bases_file(bases)
                self._check_bases(read)                 # before the first job's inversion
                self._bases_file = (bases, read)
            bases = self._bases_file[1]
        unguided = "unguided" in extras
        job_cfg = dataclasses.replace(config, img2img=bool(job["img2img"]))
        result = self(job["prompt"], images["condition"], job_cfg, inversion_prompt=job["inversion_prompt"],
                      subject=job["subject"], concept=job["concept"], seed=job["seed"], num_images=job["num_images"],
                      bases=bases, unguided=unguided, appearance=images.get("appearance"),
                      appearance_prompt=job["appearance_prompt"], reporter=reporter)
        return JobResult(result.images, {"unguided": result.unguided} if unguided else {},
                         {"guided_steps": result.guided_steps, "skipped_steps": len(result.skipped_steps),
                          "img2img": bool(job["img2img"])})

    def _prepare(self, prompt: str, start: Start, inversion_prompt: str | None, subject: str | None,
                 concept: str | None, bases: SemanticBases | None, appearance_prompt: str | None,
                 reporter: "Reporter | None") -> "_Plan":
        """Everything before the denoising loop, after the shared opening (``start``): prompts checked, the
        condition's (and appearance image's) inversion, the semantic bases and the guidance targets at each
        guided step."""
        config, condition, appearance = start.config, start.images["condition"], start.images["appearance"]
        size, shape = start.size, start.shape        # (h, w): the condition's aspect ratio, long side size
        inversion_prompt = prompt if inversion_prompt is None else inversion_prompt
        appearance_prompt = prompt if appearance_prompt is None else appearance_prompt
        for text, what in ((prompt, "the prompt"), (inversion_prompt, "the inversion prompt"),
                           (appearance_prompt, "the appearance prompt"),
                           (config.negative_prompt, "the negative prompt")):
            self.check_prompt_length(text, what, reporter, depth=3)   # the pipeline's caller
        ref_word, _ = parse_subject(subject)
        plan = _Plan(start.scheduler, shape)
        ts, n_guided = plan.ts, config.guided_steps if config.structure_weight > 0 else 0
        if n_guided and bases is None:
            concept = concept or default_concept(prompt, subject)          # before the inversion's work
        plan.n_guided = n_guided
        if appearance is not None and not (n_guided and config.appearance_weight > 0):
            self._warn(reporter, "the appearance image is ignored: it acts through the guidance energy, which is off "
                       "(--structure-weight 0, --appearance-weight 0 or --guidance-end 0)", depth=2)
            appearance = None
        plan.need_condition = n_guided > 0 or config.img2img

        token_indices = None
        if n_guided and not config.img2img and config.mask_threshold > 0:
            try:
                token_indices = (subject_token_indices(self.tokenizer, inversion_prompt, ref_word) if ref_word
                                 else prompt_token_indices(self.tokenizer, inversion_prompt))
            except ValueError as exc:
                raise UsageError(f"--subject: {exc}") from exc
        if n_guided and bases is not None:
            self._check_bases(bases)                    # before the inversion's work
        if plan.need_condition:
            plan.trajectory = self.invert(condition, inversion_prompt, config, ts, reporter)
        if n_guided:
            if bases is None:
                bases_cfg = dataclasses.replace(config.bases,
                                                inversion_steps=config.bases.inversion_steps or config.inversion_steps)
                bases = self.semantic_bases(concept, bases_cfg, size, reporter)
            plan.bases, plan.layers = bases, self._check_bases(bases)
            self._note_components(bases, config, reporter)
            far = max(abs(int(bases.timesteps[bases.index(t)]) - t) for t in ts[:n_guided])
            if far > max(2 * bases.spacing(), 25):
                self._warn(reporter, f"the semantic bases cover timesteps {int(bases.timesteps.min())}.."
                           f"{int(bases.timesteps.max())}; guided steps reach {far} timesteps from the nearest one",
                           depth=2)
            inv_cond = self.encode_text([inversion_prompt], shape)
            plan.cond_feats = self.condition_features(plan.trajectory, ts[:n_guided], inv_cond, bases, plan.layers,
                                                      config, token_indices, reporter)

        plan.text = self.encode_text([prompt], shape, negative=config.negative_prompt)
        if appearance is not None:
            plan.app_traj = invert_condition(self, appearance, appearance_prompt, shape, ts[:n_guided],
                                             config.inversion_steps, self.cache_dir, reporter)
            plan.app_feats = self.appearance_features(plan.app_traj, ts[:n_guided], plan.text.positive(), bases,
                                                      plan.layers, config, reporter)
        return plan

    def _apply_guidance(self, scheduler, prev_c: torch.Tensor, grad: torch.Tensor, t: int) -> torch.Tensor:
        """The DDIM step's result moved along the energy's gradient (the official ``guided_update``)."""
        alphas = scheduler.alphas_cumprod
        prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        a_prev = float(alphas[prev_t]) if prev_t >= 0 else float(scheduler.final_alpha_cumprod)
        return G.guided_update(prev_c, grad, float(alphas[t]), a_prev)

    def _guided_step(self, x_c: torch.Tensor, x_a: torch.Tensor | None, t, text: Conditioning, layers: list[str],
                     bases: SemanticBases, coords_g: list[torch.Tensor], mask: torch.Tensor | None, weight: float,
                     config: FreeControlConfig, live: FeatureStore, app_ref: list[torch.Tensor] | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, float]:
        """One guided step's UNet work for the guided latents ``x_c`` and the siblings ``x_a`` (``[N, c, h, w]``
        each; ``x_a`` None when no sibling runs).

        The rows are ``[x_c | negative; x_a | negative; x_a | prompt; x_c | prompt]``: the siblings' conditional
        keys feed the appearance energy and the guided row's keys the energy, with gradients on up to the last
        key layer and off after it, so the keys cost no extra forward pass and the guided row's output is its
        conditional prediction. With ``self.one_call`` they go through the UNet in one call; otherwise the rows
        that need no gradient go first (no autograd) and ``x_c | prompt`` after them on its own.

        ``live``: the store of the recording processors installed on ``layers`` (``recording``, once per call of
        ``__call__``); it is left recording nothing. ``app_ref``: per layer, the appearance energy's reference
        vectors (from an appearance image); None: the siblings' (when they run and the weight is not 0).

        Returns ``(eps_c, eps_a, grad, energy)``: the CFG predictions (``eps_a`` None without siblings) and
        ∇_x of ``weight * mean_layers(g_s + appearance_weight * g_a)`` (summed over the ``N`` samples), or None
        when it is not finite.
        """
        n = x_c.shape[0]
        neg, pos = text.negative.expand(n), text.positive().expand(n)
        want_app = x_a is not None and config.appearance_weight > 0 and app_ref is None
        rows, conds = ([x_c, x_a, x_a], [neg, neg, pos]) if x_a is not None else ([x_c], [neg])
        x = x_c.detach().requires_grad_(True)
        live.clear()
        if self.one_call:            # [x_c | neg; (x_a | neg; x_a | prompt;) x | prompt], gradients up to the keys
            total = (len(rows) + 1) * n
            live.rows = list(range(total - (2 * n if want_app else n), total))
            live.record_keys, live.grad_off_after = True, layers[-1]
            with torch.enable_grad():
                with torch.enable_grad():               # restores grad mode after the processors switch it off
                    out = self.unet_forward(torch.cat([*rows, x]), t, Conditioning.stack([*conds, pos]))
                keys_a = {k: v[:n].detach().float() for k, v in live.keys.items()} if want_app else {}
                keys_c = {k: v[-n:].float() for k, v in live.keys.items()}
                refs = self._references(keys_a, t, layers, bases, config) if want_app else app_ref
                grad, value = self._energy_gradient(x, keys_c, refs, t, layers, bases, coords_g, mask, weight,
                                                   config)
            out = out.detach()
            text_c = out[-n:]
        else:
            live.rows, live.record_keys, live.grad_off_after = list(range(2 * n, 3 * n)), want_app, None
            with torch.no_grad():                       # siblings|prompt keys for the appearance energy
                out = self.unet_forward(torch.cat(rows), t, Conditioning.stack(conds))
            keys_a = {k: v.float() for k, v in live.keys.items()}
            live.clear()
            live.rows, live.record_keys, live.grad_off_after = None, True, layers[-1]
            with torch.enable_grad():
                with torch.enable_grad():               # restores grad mode after the processors switch it off
                    text_c = self.unet_forward(x, t, pos).detach()
                keys_c = {k: v.float() for k, v in live.keys.items()}
                refs = self._references(keys_a, t, layers, bases, config) if want_app else app_ref
                grad, value = self._energy_gradient(x, keys_c, refs, t, layers, bases, coords_g, mask, weight,
                                                   config)
        live.clear()
        live.rows, live.record_keys, live.grad_off_after = None, False, None     # plain attention until next time
        s = config.guidance_scale
        uncond_c = out[:n]
        eps_c = uncond_c + s * (text_c - uncond_c)
        eps_a = None if x_a is None else out[n:2 * n] + s * (out[2 * n:3 * n] - out[n:2 * n])
        if not torch.isfinite(grad).all():
            return eps_c, eps_a, None, value
        return eps_c, eps_a, grad, value

    def _references(self, keys_a: dict[str, torch.Tensor], t, layers: list[str], bases: SemanticBases,
                    config: FreeControlConfig) -> list[torch.Tensor]:
        """The siblings' appearance vectors per layer (the appearance energy's reference without an image)."""
        return [self._appearance_vectors(keys_a[name], t, j, bases, config) for j, name in enumerate(layers)]

    def _energy_gradient(self, x: torch.Tensor, keys_c: dict[str, torch.Tensor], refs: list[torch.Tensor] | None,
                         t, layers: list[str], bases: SemanticBases, coords_g: list[torch.Tensor],
                         mask: torch.Tensor | None, weight: float, config: FreeControlConfig,
                         ) -> tuple[torch.Tensor, float]:
        """``(∇_x L, L)`` for ``L = weight * mean_layers(g_s + appearance_weight * g_a) * N``: ``keys_c`` are the
        guided rows' keys ``[N, HW, C]`` per layer (in ``x``'s graph), ``refs`` the appearance vectors per layer
        (``[N or 1, N_a, C]``) the guided rows' are drawn to (None: no appearance energy)."""
        n = x.shape[0]
        total = x.new_zeros(())
        for j, name in enumerate(layers):
            keys = keys_c[name]
            mean, basis = bases.at(t, j, self.device)
            coords = G.minmax_normalize(G.semantic_coordinates(keys, mean, basis, config.n_components))
            energy = G.structure_energy(coords_g[j], coords, mask, config.penalty)
            if refs is not None and config.appearance_weight > 0:
                vectors = G.appearance_vectors(keys, coords, config.appearance_components, config.appearance_threshold)
                energy = energy + config.appearance_weight * G.appearance_energy(vectors,
                                                                                 refs[j].expand_as(vectors))
            total = total + energy
        loss = weight * total / len(layers) * n
        (grad,) = torch.autograd.grad(loss, x)
        return grad, float(loss.detach())
