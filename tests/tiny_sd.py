"""Tiny Stable Diffusion pipelines built in code for the FreeControl tests (random weights, CPU, milliseconds).

The SD-shaped one mirrors SD 1.x's block layout (down: CrossAttn, CrossAttn, Down; up: Up, CrossAttn, CrossAttn;
two layers per block), so ``up_blocks.1`` is a cross-attention block with three ``attn1`` layers, as in SD. The
SDXL-shaped one has SDXL's layout (down: Down, CrossAttn, CrossAttn; up: CrossAttn, CrossAttn, Up), two text
encoders, pooled embeddings and time ids, so ``up_blocks.0`` is its feature block. The tokenizer is generated in
code (byte-level CLIP BPE plus a few whole-word merges).
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = ("a", "an", "photo", "of", "red", "blue", "green", "circle", "square", "triangle", "cat", "dog", "lion",
         "outline", "sketch", "with", "simple", "background", "best", "quality", "extremely", "detailed", "low",
         "worst", "cropped", "fewer", "digits")
MAX_LEN = 16


def tokenizer():
    from i2i.demo.tokenizer import build_tokenizer

    return build_tokenizer(WORDS, MAX_LEN)


def scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)


def vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 16, 16),
                         layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=32)


def text_encoder(tok, hidden: int = 32, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=MAX_LEN, projection_dim=hidden,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def sd_pipeline(seed: int = 0, prediction_type: str = "epsilon"):
    """A StableDiffusionPipeline with SD 1.x's layout; native size 32 px (latent 8x8, up_blocks.1 at 4x4)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    tok = tokenizer()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(16, 32, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = StableDiffusionPipeline(vae=vae(), text_encoder=text_encoder(tok), tokenizer=tok, unet=unet,
                                       scheduler=scheduler(prediction_type), safety_checker=None,
                                       feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sdxl_pipeline(seed: int = 0):
    """A StableDiffusionXLPipeline with SDXL's layout (two text encoders, pooled embeds, time ids)."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    tok = tokenizer()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2), cross_attention_dim=64, attention_head_dim=4, norm_num_groups=8,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = StableDiffusionXLPipeline(vae=vae(), text_encoder=text_encoder(tok), text_encoder_2=text_encoder(
            tok, projection=True), tokenizer=tok, tokenizer_2=tokenizer(), unet=unet, scheduler=scheduler(),
            add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_sd(folder, seed: int = 0, prediction_type: str = "epsilon"):
    """Save a tiny SD pipeline as a diffusers folder (for ``--model``); returns the folder."""
    pipe = sd_pipeline(seed, prediction_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def _one_thread():
    """Run a test module's tiny models on one thread: they gain nothing from more, and a second busy process on a
    2-core machine makes OpenMP spin-waits hundreds of times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


try:
    import pytest

    one_thread = pytest.fixture(autouse=True, scope="module")(_one_thread)
except ImportError:  # pragma: no cover - only the tests use this module
    pass


_RESNET_TO_LDM = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                  "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _ldm_unet_key(key: str, unet) -> str:
    """The original (LDM) name of a diffusers SD UNet parameter."""
    for new, old in (("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"),
                     ("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"), ("conv_out", "out.2")):
        if key.startswith(new + "."):
            return old + key[len(new):]
    p = key.split(".")
    per = unet.config.layers_per_block + 1
    if p[0] == "mid_block":
        head, rest = f"middle_block.{2 * int(p[2]) if p[1] == 'resnets' else 1}", p[3:]
    elif p[2] == "downsamplers":
        head, rest = f"input_blocks.{(int(p[1]) + 1) * per}.0.op", p[5:]
    elif p[2] == "upsamplers":
        sub = 2 if getattr(unet.up_blocks[int(p[1])], "attentions", None) else 1
        head, rest = f"output_blocks.{int(p[1]) * per + per - 1}.{sub}", p[4:]
    else:
        index = int(p[1]) * per + int(p[3]) + (1 if p[0] == "down_blocks" else 0)
        side = "input" if p[0] == "down_blocks" else "output"
        head, rest = f"{side}_blocks.{index}.{0 if p[2] == 'resnets' else 1}", p[4:]
    if "resnets" in p:
        rest = [_RESNET_TO_LDM.get(rest[0], rest[0]), *rest[1:]]
    return ".".join([head, *rest])


def _ldm_vae_key(key: str, n_blocks: int) -> str:
    """The original (LDM) name of a diffusers AutoencoderKL parameter."""
    p = key.split(".")
    if p[1] in ("down_blocks", "up_blocks"):
        i = int(p[2]) if p[1] == "down_blocks" else n_blocks - 1 - int(p[2])
        side = "down" if p[1] == "down_blocks" else "up"
        if p[3] == "resnets":
            rest = ["nin_shortcut" if p[5] == "conv_shortcut" else p[5], *p[6:]]
            return ".".join([p[0], side, str(i), "block", p[4], *rest])
        return ".".join([p[0], side, str(i), "downsample" if side == "down" else "upsample", *p[5:]])
    if len(p) > 2 and p[1] == "mid_block":
        if p[2] == "resnets":
            return ".".join([p[0], "mid", f"block_{int(p[3]) + 1}", *p[4:]])
        names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
        rest = [names[p[4]], p[-1]]
        return ".".join([p[0], "mid", "attn_1", *rest])
    return key.replace("conv_norm_out", "norm_out")


def save_single_file(path, seed: int = 0):
    """Save a tiny SD pipeline as one original-layout (LDM) ``.safetensors`` checkpoint, as SD 1.x files are
    published; returns the pipeline it holds."""
    from safetensors.torch import save_file

    pipe = sd_pipeline(seed)
    n_vae = len(pipe.vae.config.block_out_channels)
    tensors = {f"model.diffusion_model.{_ldm_unet_key(k, pipe.unet)}": v for k, v in pipe.unet.state_dict().items()}
    for k, v in pipe.vae.state_dict().items():
        if ".mid_block.attentions." in k and k.endswith("weight") and v.ndim == 2:
            v = v[:, :, None, None]                       # LDM's attention projections are 1x1 convolutions
        tensors[f"first_stage_model.{_ldm_vae_key(k, n_vae)}"] = v
    tensors.update({f"cond_stage_model.transformer.{k if k.startswith('text_model.') else 'text_model.' + k}": v
                    for k, v in pipe.text_encoder.state_dict().items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return pipe


def warning_recorder():
    """A quiet :class:`i2i.progress.Reporter` that keeps its warnings in ``.warnings``."""
    from i2i.progress import Reporter

    class Recorder(Reporter):
        def __init__(self):
            super().__init__(quiet=True)
            self.warnings = []

        def warn(self, message):
            self.warnings.append(message)

    return Recorder()
