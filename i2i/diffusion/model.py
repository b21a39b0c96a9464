"""The building blocks every diffusion method here shares, on a diffusers SD 1.x / 2.x or SDXL pipeline: text
conditioning, UNet calls, VAE encode/decode, initial noise, output sizes and the scheduler. Methods subclass
:class:`DiffusionModel` and add their own ``__call__``."""

from __future__ import annotations

import os
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from i2i.diffusion.conditioning import Conditioning
from i2i.diffusion.loading import DTYPES, load_pipeline, modules_fingerprint, place
from i2i.diffusion.vae import check_vae_decode, check_vae_fits, decode_latents, load_vae
from i2i.errors import UsageError
from i2i.progress import warn
from i2i.seeds import check_seed

if TYPE_CHECKING:
    from i2i.progress import Reporter


def _ratio(size: tuple[int, int]) -> float:
    """Long side over short side of a ``(width, height)``."""
    return max(size) / max(1, min(size))


@dataclass
class Start:
    """What every method's call begins with (:meth:`DiffusionModel.start`): the validated ``config``, the input
    ``images`` read (None where not given), the output ``shape`` ``(h, w)`` and long side ``size``, the initial
    ``noise`` ``[N, c, h, w]``, the seeded CPU ``generator`` it was drawn from (its later draws continue the
    stream) and the ``scheduler`` with its timesteps set."""

    config: Any
    images: dict[str, "Image.Image | None"]
    size: int
    shape: tuple[int, int]
    noise: torch.Tensor
    generator: torch.Generator
    scheduler: Any

    @property
    def num_images(self) -> int:
        return self.noise.shape[0]

    @property
    def timesteps(self) -> torch.Tensor:
        return self.scheduler.timesteps


class DiffusionModel:
    """A Stable Diffusion (1.x / 2.x, epsilon or v-prediction) or SDXL pipeline placed on a device.

    ``base`` is a ``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline`` whose components (UNet, VAE, text
    encoders, tokenizers, ``encode_prompt``) are reused; sampling uses a ``DDIMScheduler`` and inversion a
    ``DDIMInverseScheduler``, both made from the model's scheduler config. ``model_id`` names the weights
    (``NAME@FINGERPRINT`` when loaded; the cache keys use what follows the @, so one model under two names shares
    its entries; default: a fingerprint of the weights). ``model_folder``: the diffusers folder it came from (for
    its recommended settings; None for in-memory or single-file models). ``vae``: a replacement VAE (an
    ``AutoencoderKL``, or a folder / hub id / file for :func:`i2i.diffusion.vae.load_vae`), run at ``precision``;
    the model's own VAE runs in float32. ``vae_decode``: ``auto``, ``full`` or ``tiled``
    (:func:`i2i.diffusion.vae.use_tiles`). ``text_encoder_device``: where the text encoders live and run (default:
    ``device``); ``"cpu"`` keeps their weights (1.5 GiB of SDXL's in bf16) off the GPU, runs them in float32 and
    moves only the embeddings to ``device``.

    The wrapper moves and casts ``base``'s modules in place (no copy of the weights is made): wrap one pipeline
    object once, or wrap two at one device and precision; a wrapper whose modules another one has cast since says
    so when called.
    """

    def __init__(self, base, model_id: str | None = None, device: str | torch.device | None = None,
                 precision: str = "fp32", cache_dir: str | Path | None = None,
                 model_folder: str | Path | None = None, vae=None, vae_decode: str = "auto",
                 text_encoder_device: str | torch.device | None = None) -> None:
        from diffusers import DDIMInverseScheduler

        from i2i.device import check_precision, resolve_device
        from i2i.diffusion.cache_dir import default_cache_dir

        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.precision = check_precision(precision, self.device)
        self.dtype = DTYPES[self.precision]
        self.base = base
        self.is_sdxl = getattr(base, "text_encoder_2", None) is not None
        self.unet = place(base.unet, self.device, self.dtype)
        self.vae_decode = check_vae_decode(vae_decode)
        if vae is not None:                       # e.g. an fp16-safe VAE: it runs at the pipeline's precision
            replacement = load_vae(vae, like=base.vae) if isinstance(vae, (str, os.PathLike)) else vae
            check_vae_fits(replacement, base, vae)
            base.vae = replacement
            self.vae = place(base.vae, self.device, self.dtype)
        else:                                     # the model's own VAE runs in fp32, as in the official code
            self.vae = place(base.vae, self.device, torch.float32)
        text_dev = text_encoder_device
        self.text_device = self.device if text_dev in (None, "auto") else (
            text_dev if isinstance(text_dev, torch.device) else resolve_device(text_dev))
        explicit_cpu = text_dev not in (None, "auto") and self.text_device.type == "cpu"
        self.text_dtype = torch.float32 if explicit_cpu else self.dtype     # half precision is slow on CPUs
        for name in ("text_encoder", "text_encoder_2"):
            if getattr(base, name, None) is not None:
                place(getattr(base, name), self.text_device, self.text_dtype)
        self.tokenizer = base.tokenizer
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.scheduler = self.make_scheduler()
        self.inverse_scheduler = DDIMInverseScheduler.from_config(base.scheduler.config)
        identity = model_id or modules_fingerprint(base.unet, base.vae, base.text_encoder,
                                                   getattr(base, "text_encoder_2", None))
        if vae is not None and model_id is not None:     # the VAE encodes conditions: part of the cache keys
            identity = f"{identity}+vae:{modules_fingerprint(base.vae)}"
        self.model_id = f"{identity}|{self.precision}"
        # The same without the name the weights were loaded by (a folder's path or hub id): what the cache keys
        # and a model folder's own precomputed files name the model by, so one model under two names shares them.
        self.weights_id = f"{identity.rpartition('@')[2]}|{self.precision}"
        if self.text_dtype != self.dtype:                 # other embeddings: other cached inversions
            text = f"|text:{str(self.text_dtype).removeprefix('torch.')}"
            self.model_id, self.weights_id = self.model_id + text, self.weights_id + text
        self.model_folder = Path(model_folder) if model_folder is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike, device: str | torch.device | None = None,
                        precision: str = "fp32", config: str | None = None, **kwargs):
        """Load a diffusers SD 1.x / 2.x / SDXL folder, hub id (hub files only from the local cache when
        ``HF_HUB_OFFLINE`` is set) or single-file checkpoint (``config``: a diffusers folder describing it, needed
        offline). ``kwargs`` go to the constructor."""
        from i2i.device import check_precision, resolve_device

        dev = device if isinstance(device, torch.device) else resolve_device(device)
        precision = check_precision(precision, dev)          # "auto" resolved for the device
        loaded = load_pipeline(model, precision, config)
        return cls(loaded.base, model_id=loaded.model_id, device=dev, precision=precision,
                   model_folder=loaded.folder, **kwargs)

    method: Any = None          # the method's DiffusionMethod (i2i.diffusion.method), set by each subclass

    def default_config(self) -> Any:
        """The method's settings for this model: its defaults with the model folder's recommended settings
        (``i2i_<method>.json``) applied; what a call without ``config`` uses, and what the CLI starts from."""
        return self.method.model_config(self.model_folder)

    def start(self, config: Any, images: dict[str, Any], seed: int, num_images: int = 1,
              latents: torch.Tensor | None = None, reporter: "Reporter | None" = None) -> Start:
        """The opening of every method's call: ``config`` (None: :meth:`default_config`) validated,
        ``num_images`` checked, the ``images`` (name -> image, path or None) read, the output shape (the first
        given image's aspect ratio, long side ``config.size`` or the native size; square without images), the
        initial noise (seeded, or ``latents`` ``[N, c, h, w]``, which then set the number of images) and a
        fresh DDIM scheduler with ``config.num_inference_steps`` timesteps. An aspect ratio the output cannot keep
        (its short side would be under one :attr:`size_unit`) is warned about through ``reporter``."""
        from i2i.images import load_image

        config = (config or self.default_config()).validate()
        if self.unet.dtype != self.dtype:
            raise UsageError(f"this pipeline's UNet is {self.unet.dtype} but it was wrapped for {self.dtype}: another "
                             "wrapper of the same diffusers pipeline cast it since (wrappers change the pipeline in "
                             "place; load or wrap a separate pipeline for each precision)")
        if num_images < 1:
            raise UsageError("--num-images must be at least 1")
        for name, img in images.items():
            if img is not None and not isinstance(img, (Image.Image, str, os.PathLike)):
                hint = " (settings go in config=...)" if is_dataclass(img) else ""
                raise TypeError(f"{name}: expected a PIL image or a path, got {type(img).__name__}{hint}")
        images = {name: load_image(img) if img is not None and not isinstance(img, Image.Image) else img
                  for name, img in images.items()}
        size = self.check_size(config.size or self.default_size)
        reference = next((img for img in images.values() if img is not None), None)
        shape = self.output_shape(reference.size, size) if reference is not None else (size, size)
        if reference is not None and size / _ratio(reference.size) < self.size_unit / 2:     # short side clamped
            self._warn(reporter, f"the image's aspect ratio ({reference.size[0]}x{reference.size[1]}) cannot be kept "
                       f"at {size} px: the output is {shape[1]}x{shape[0]}, its short side at least "
                       f"{self.size_unit} px", depth=3)
        generator = torch.Generator("cpu").manual_seed(check_seed(seed))
        noise = self.initial_noise(num_images, shape, generator) if latents is None else \
            latents.to(self.device, torch.float32)
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(config.num_inference_steps, device=self.device)
        return Start(config, images, size, shape, noise, generator, scheduler)

    def make_scheduler(self):
        """A fresh ``DDIMScheduler`` from the model's scheduler config (its timestep spacing and offset)."""
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(self.base.scheduler.config)

    # ------------------------------------------------------------------ sizes
    @property
    def default_size(self) -> int:
        """The model's native resolution: UNet sample size x VAE factor (SD 1.5: 512, SDXL: 1024)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def size_unit(self) -> int:
        """Output sides must be multiples of this (VAE factor x UNet downsampling; SD: 64)."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.down_block_types) - 1)

    def check_size(self, size: int) -> int:
        from i2i.images import MAX_SIDE

        unit = self.size_unit
        if not 0 < size <= MAX_SIDE or size % unit:
            raise UsageError(f"--size {size}: must be a multiple of {unit} from {unit} to "
                             f"{MAX_SIDE - MAX_SIDE % unit:,} pixels for this model")
        return size

    def output_shape(self, condition_size: tuple[int, int], size: int) -> tuple[int, int]:
        """``(height, width)`` of the output for a condition of PIL size ``(width, height)``: the long side is
        ``size`` and the short side keeps the condition's aspect ratio, rounded to a multiple of
        :attr:`size_unit` (at least one unit), so nothing is squashed."""
        w, h = condition_size
        unit = self.size_unit
        short = max(unit, int(round(size * min(w, h) / max(w, h) / unit)) * unit)
        return (size, short) if h >= w else (short, size)

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def encode_text(self, prompts: list[str], size: int | tuple[int, int],
                    negative: str | None = None) -> Conditioning:
        """Text conditioning for ``prompts`` (``negative``: also the CFG negative, same for every prompt) at
        ``size`` (a side, or ``(height, width)``: SDXL's size conditioning)."""
        hw = (size, size) if isinstance(size, int) else tuple(size)
        cfg = negative is not None
        negs = [negative] * len(prompts) if cfg else None
        if self.is_sdxl:
            pos, neg, pooled, neg_pooled = (self._on_device(v) for v in self.base.encode_prompt(
                prompts, device=self.text_device, num_images_per_prompt=1, do_classifier_free_guidance=cfg,
                negative_prompt=negs))
            proj = self.base.text_encoder_2.config.projection_dim
            ids = self.base._get_add_time_ids(hw, (0, 0), hw, dtype=pos.dtype,
                                              text_encoder_projection_dim=proj).to(self.device)
            ids = ids.repeat(len(prompts), 1)
            out = Conditioning(pos, pooled, ids)
            if cfg:
                out.negative = Conditioning(neg, neg_pooled, ids)
            return out
        pos, neg = (self._on_device(v) for v in self.base.encode_prompt(prompts, self.text_device, 1, cfg,
                                                                         negative_prompt=negs))
        return Conditioning(pos, negative=Conditioning(neg) if cfg else None)

    def _on_device(self, embeddings: torch.Tensor | None) -> torch.Tensor | None:
        """Text embeddings moved from the text encoders' device and dtype to the UNet's."""
        return None if embeddings is None else embeddings.to(self.device, self.dtype)

    def check_prompt_length(self, text: str, what: str, reporter: "Reporter | None" = None, depth: int = 1) -> None:
        """Warn when ``text`` has more tokens than the text encoder reads: like diffusers, the rest is cut off.
        The warning points ``depth`` frames above this call (1: its caller)."""
        limit = self.tokenizer.model_max_length
        ids = self.tokenizer(text, truncation=False, verbose=False)["input_ids"]
        if len(ids) > limit:
            kept = self.tokenizer.decode(ids[1:limit - 1]).strip()
            self._warn(reporter, f"{what} is {len(ids) - 2} tokens long; the model reads only the first "
                       f"{limit - 2} (\"{kept}\"), the rest is ignored", depth=depth)

    def _warn(self, reporter: "Reporter | None", message: str, depth: int = 1) -> None:
        """A warning that points ``depth`` frames above the method calling this (1: that method's caller)."""
        warn(reporter, message, stacklevel=2 + depth)

    # ------------------------------------------------------------------ UNet
    def unet_forward(self, latents: torch.Tensor, t, cond: Conditioning) -> torch.Tensor:
        """UNet prediction (float32) for latents ``[B, c, h, w]`` at timestep ``t`` with ``B``-row ``cond``."""
        return self.unet(latents.to(self.dtype), t, **cond.unet_kwargs()).sample.float()

    def cfg_noise(self, latents: torch.Tensor, t, cond: Conditioning, guidance_scale: float) -> torch.Tensor:
        """Classifier-free guided prediction for ``latents`` ``[B, ...]`` (batch ``[negative; positive]``)."""
        pred = self.unet_forward(torch.cat([latents, latents]), t, cond.with_negative())
        uncond, text = pred.chunk(2)
        return uncond + guidance_scale * (text - uncond)

    def initial_noise(self, n: int, size: int | tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """Initial latents ``[n, c, h/f, w/f]`` for ``size`` (a side or ``(h, w)``), drawn on the CPU with
        ``generator`` (device independent)."""
        h, w = (size, size) if isinstance(size, int) else size
        f = self.vae_scale_factor
        noise = torch.randn((n, self.unet.config.in_channels, h // f, w // f), generator=generator,
                            dtype=torch.float32)
        return noise.to(self.device) * self.scheduler.init_noise_sigma

    # ------------------------------------------------------------------ VAE
    @torch.no_grad()
    def encode_image(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """VAE latent ``[1, c, h, w]`` (a sample of the latent distribution, times the scaling factor)."""
        from i2i.images import convert_image, image_to_tensor

        x = image_to_tensor(convert_image(image))[None].to(self.device, self.vae.dtype)
        dist = self.vae.encode(x).latent_dist
        return dist.sample(generator=generator).float() * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        """Images from scaled latents, one at a time, tiled as ``vae_decode`` says (:mod:`i2i.diffusion.vae`)."""
        from i2i.errors import NumericalError
        from i2i.images import tensor_to_image

        if not torch.isfinite(latents).all():
            raise NumericalError("the sampling diverged: its latents are not finite (NaN or infinite), e.g. from a "
                                 "far too large --guidance-scale or guidance weight; nothing was written")
        return [tensor_to_image(img) for img in decode_latents(self.vae, latents, self.vae_decode)]
