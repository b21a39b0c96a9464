"""Stage 2 of the demo model's training: UNet and text encoder on the VAE's latents, resumable step by step."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from i2i.demo.build import RECOMMENDED_SETTINGS, build_text_encoder, build_unet, make_pipeline
from i2i.demo.correspondence import GROUP, matching
from i2i.demo.data import IMAGE_SIZE, eval_prompts
from i2i.demo.paired_attention import paired
from i2i.demo.train_config import UNET_STAGE, DemoTrainConfig, RunFolder, learning_rate, seeded_build, step_generator
from i2i.demo.vae_stage import encode_dataset, encode_pairs
from i2i.device import autocast
from i2i.errors import UsageError


class UNetStage:
    """The trained weights, their EMA and the optimizer; :meth:`step` is one training step."""

    def __init__(self, cfg: DemoTrainConfig, tokenizer: Any, dev: torch.device) -> None:
        self.cfg, self.dev = cfg, dev
        self.unet, self.text = seeded_build(cfg.seed, UNET_STAGE, lambda: (build_unet().to(dev),
                                                                          build_text_encoder(tokenizer).to(dev)))
        if cfg.init_from:
            load_init(Path(cfg.init_from), self.unet, self.text)
        self.ema_unet, self.ema_text = build_unet().to(dev), build_text_encoder(tokenizer).to(dev)
        self.ema_unet.load_state_dict(self.unet.state_dict())
        self.ema_text.load_state_dict(self.text.state_dict())
        self.ema_unet.requires_grad_(False)
        self.ema_text.requires_grad_(False)
        self.params = list(self.unet.parameters()) + list(self.text.parameters())
        self.ema_params = list(self.ema_unet.parameters()) + list(self.ema_text.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=cfg.unet_lr, weight_decay=1e-2)
        self.done, self.loss_ema, self.match_ema = 0, None, None

    def state(self) -> dict:
        return {"step": self.done, "loss_ema": self.loss_ema, "match_ema": self.match_ema,
                "unet": self.unet.state_dict(), "text_encoder": self.text.state_dict(),
                "ema_unet": self.ema_unet.state_dict(), "ema_text": self.ema_text.state_dict(),
                "opt": self.opt.state_dict()}

    def load(self, state: dict) -> None:
        _check_layout(state["unet"], self.unet.state_dict())
        self.done, self.loss_ema, self.match_ema = state["step"], state["loss_ema"], state.get("match_ema")
        self.unet.load_state_dict(state["unet"])
        self.text.load_state_dict(state["text_encoder"])
        self.ema_unet.load_state_dict(state["ema_unet"])
        self.ema_text.load_state_dict(state["ema_text"])
        self.opt.load_state_dict(state["opt"])

    def step(self, data: "LatentData", gen: torch.Generator) -> float:
        cfg, step = self.cfg, self.done
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(step, cfg.unet_steps, cfg.unet_lr)
        rows, match = cfg.pair_rows, cfg.match_weight > 0
        z, tokens, cover = data.batch(cfg.unet_batch, cfg.caption_dropout, gen, rows)
        noise = torch.randn(z.shape, generator=gen).to(self.dev)
        t = torch.randint(0, 1000, (cfg.unet_batch,), generator=gen).to(self.dev)
        if match:                          # each group of matched rows at one noise level, as Ctrl-X's branches
            t[:rows] = t[:rows:GROUP].repeat_interleave(GROUP)
        with (autocast(self.dev, cfg.unet_precision), paired(self.unet, 0 if match else rows),
              matching(self.unet, cover if match else None) as matcher):      # float32 weights, EMA, loss
            pred = self.unet(data.schedule.add_noise(z, noise, t), t, self.text(tokens).last_hidden_state).sample
        loss = (snr_weight(data.schedule.alphas_cumprod[t], cfg.min_snr_gamma) *
                F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))).mean()
        total = loss
        if matcher is not None:                   # the log's loss_ema stays the denoising loss alone
            match_loss = torch.stack(matcher.losses).mean()
            self.match_ema = _ema(self.match_ema, match_loss.item())
            total = loss + cfg.match_weight * match_loss
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(self.ema_params, self.params, 1.0 - decay)
        self.done += 1
        self.loss_ema = _ema(self.loss_ema, loss.item())
        return loss.item()


def _ema(average: float | None, value: float) -> float:
    return value if average is None else 0.98 * average + 0.02 * value


def load_init(folder: Path, unet: torch.nn.Module, text: torch.nn.Module) -> None:
    """Start from the UNet and text encoder of the pipeline ``folder`` (``init_from``: a fine-tune)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    if not (folder / "unet" / "config.json").is_file():
        raise UsageError(f"init_from {folder}: not a pipeline folder (no unet/config.json)")
    saved = UNet2DConditionModel.from_pretrained(folder / "unet").state_dict()
    _check_layout(saved, unet.state_dict())
    unet.load_state_dict(saved)
    text.load_state_dict(CLIPTextModel.from_pretrained(folder / "text_encoder").state_dict())


def _check_layout(saved: dict, current: dict) -> None:
    """Refuse a checkpoint whose UNet was built with another layout (the layout is code, in
    :mod:`i2i.demo.build`, so an older run folder can outlive it)."""
    differ = [k for k in current if k not in saved or saved[k].shape != current[k].shape]
    if differ or len(saved) != len(current):
        raise UsageError(f"--resume: this run's unet.pt was made with another UNet layout than i2i.demo.build's "
                         f"({len(differ)} of {len(current)} weights differ in name or shape, e.g. "
                         f"{(differ or sorted(set(saved) - set(current)))[0]}); start a new run folder")


def snr_weight(alphas_cumprod: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights of epsilon-prediction, min(SNR, gamma) / SNR with SNR = a / (1 - a) (Hang et al.,
    "Efficient Diffusion Training via Min-SNR Weighting Strategy", 2023: the noisiest steps keep weight 1, the
    nearly clean ones, whose epsilon is hard to tell and of little use, are weighted down); ``gamma`` 0: all 1."""
    if gamma <= 0:
        return torch.ones_like(alphas_cumprod)
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return snr.clamp(max=gamma) / snr


class LatentData:
    """The encoded data set: latent means/stds, token ids, and the noise schedule."""

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, captions: list[str], tokenizer: Any,
                 scaling: float, max_length: int, dev: torch.device, pairs: tuple | None = None) -> None:
        from diffusers import DDPMScheduler

        self.means, self.stds, self.scaling, self.dev = means, stds, scaling, dev
        pad = {"padding": "max_length", "max_length": max_length, "return_tensors": "pt"}
        self.ids = tokenizer(captions, truncation=True, **pad).input_ids.to(dev)
        self.pairs = self.cover = None
        if pairs is not None:          # [P, 2, ...] latents, [P, 2, L] token ids, [P, 2, h, w] object coverage
            flat = [c for two in pairs[2] for c in two]
            ids = tokenizer(flat, truncation=True, **pad).input_ids.to(dev).unflatten(0, (-1, 2))
            self.pairs = (pairs[0], pairs[1], ids)
            self.cover = pairs[3]
        self.empty = tokenizer([""], **pad).input_ids.to(dev)
        self.schedule = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                      beta_schedule="scaled_linear")
        self.schedule.alphas_cumprod = self.schedule.alphas_cumprod.to(dev)

    def batch(self, size: int, dropout: float, gen: torch.Generator,
              paired_rows: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``size`` noisy latents and token ids; the first ``paired_rows`` are pairs (rows 2i, 2i + 1), whose
        objects' coverage of the latent pixels comes third (None without pairs)."""
        singles, cover = (self.means, self.stds, self.ids), None
        if paired_rows:                    # pairs first, as rows 2i and 2i + 1, then single images
            pick = torch.randint(0, len(self.pairs[0]), (paired_rows // 2,), generator=gen).to(self.dev)
            idx = torch.randint(0, len(self.means), (size - paired_rows,), generator=gen).to(self.dev)
            means, stds, ids = (torch.cat([p[pick].flatten(0, 1), x[idx]]) for p, x in zip(self.pairs, singles))
            cover = self.cover[pick].flatten(0, 1)
        else:
            idx = torch.randint(0, len(self.means), (size,), generator=gen).to(self.dev)
            means, stds, ids = (x[idx] for x in singles)
        z = means + stds * torch.randn(means.shape, generator=gen).to(self.dev)
        tokens = ids.clone()
        tokens[(torch.rand(size, generator=gen) < dropout).to(self.dev)] = self.empty[0]
        return z * self.scaling, tokens, cover


def run_unet_stage(run: RunFolder, cfg: DemoTrainConfig, vae: Any, tokenizer: Any, dev: torch.device,
                   stop_after: int | None) -> Any:
    """Train (or resume) until ``unet_steps`` or ``stop_after``; evaluate and write ``model/`` every
    ``eval_every`` steps and at the end. Returns the last pipeline written (None if no step was left)."""
    stage = UNetStage(cfg, tokenizer, dev)
    if (state := run.load("unet.pt")) is not None:
        stage.load(state)
    last = min(cfg.unet_steps, stop_after or cfg.unet_steps)
    if stage.done >= last:
        return None
    pairs = encode_pairs(vae, cfg, dev) if cfg.pair_share > 0 else None
    data = LatentData(*encode_dataset(vae, cfg, dev), tokenizer, vae.config.scaling_factor, cfg.max_length, dev,
                      pairs)
    t0, first, pipe = time.perf_counter(), stage.done, None
    while stage.done < last:
        stage.step(data, step_generator(cfg.seed, UNET_STAGE, stage.done))
        if stage.done % cfg.checkpoint_every == 0:
            run.save("unet.pt", stage.state())
        if stage.done % 50 == 0:
            per_step = (time.perf_counter() - t0) / (stage.done - first)
            match = {} if stage.match_ema is None else {"match_ema": round(stage.match_ema, 4)}
            run.log({"stage": "unet", "step": stage.done, "loss_ema": round(stage.loss_ema, 5), **match,
                     "sec_per_step": round(per_step, 3), "eta_min": round(per_step * (last - stage.done) / 60)})
        if stage.done % cfg.eval_every == 0 or stage.done == last:
            pipe = make_pipeline(vae, stage.ema_text, tokenizer, stage.ema_unet)
            pipe.set_progress_bar_config(disable=True)
            scores = evaluate_prompts(pipe, cfg.eval_steps, cfg.eval_guidance)
            run.log({"stage": "unet_eval", "step": stage.done, **scores})
            save_pipeline(pipe, run.path("model"), {"train_config": asdict(cfg), "unet_steps_done": stage.done,
                                                    "eval": scores})
    run.save("unet.pt", stage.state())
    return pipe


def evaluate_prompts(pipe: Any, steps: int, guidance: float, seeds: tuple[int, ...] = (0, 1)) -> dict[str, float]:
    """Shape and colour accuracy of plain samples over all prompts x ``seeds`` (read with
    :func:`i2i.shapes.read_object`, as scenes need not sit on white)."""
    from i2i.shapes import read_object

    ok_shape = ok_colour = n = 0
    prompts = eval_prompts()
    for seed in seeds:
        images = pipe([p for p, _, _ in prompts], num_inference_steps=steps, guidance_scale=guidance,
                      generator=torch.Generator().manual_seed(seed), height=IMAGE_SIZE, width=IMAGE_SIZE).images
        for (_, shape, colour), img in zip(prompts, images):
            r = read_object(img)
            ok_shape += r.shape == shape
            ok_colour += r.colour == colour
            n += 1
    return {"shape_accuracy": ok_shape / n, "colour_accuracy": ok_colour / n, "images": n}


def write_recommended_settings(folder: Path) -> None:
    """Write :data:`i2i.demo.build.RECOMMENDED_SETTINGS` into the pipeline ``folder`` (``i2i_<method>.json``)."""
    from i2i.diffusion.settings import settings_file

    for method, settings in RECOMMENDED_SETTINGS.items():
        settings_file(folder, method).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def save_pipeline(pipe: Any, out: Path, meta: dict) -> None:
    """Write the pipeline folder with its ``i2i_demo.json`` and recommended settings, atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    pipe.save_pretrained(tmp, safe_serialization=True)
    (tmp / "i2i_demo.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    write_recommended_settings(tmp)
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
