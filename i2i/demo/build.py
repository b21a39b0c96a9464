"""The demo model's parts, built from code: VAE, UNet, text encoder, scheduler, and its recommended settings.

Version 2 is laid out as Stable Diffusion 1.x, only narrower, so the methods find what they edit where they find
it on SD (docs/demo-model.md says why each choice):

- **UNet**: SD 1.x's block pattern and names: four resolutions, self- and cross-attention at the first three
  (``down_blocks.0-2``, ``up_blocks.1-3``) and in the mid block, none at the coarsest (``down_blocks.3``,
  ``up_blocks.0``). 64 px images give 32 x 32 latents, so ``up_blocks.1`` (FreeControl's features, Ctrl-X's
  structure) works at 8 x 8 = 1/8 of the image side, and the attention maps run 32 -> 16 -> 8 -> 4 -> 8 -> 16 -> 32.
- **VAE**: AutoencoderKL with 4 latent channels as SD's, but factor 2 (SD: 8): a 64 px image at factor 8 would leave
  an 8 x 8 latent and a 1 x 1 coarsest level.
- **Text encoder**: a 2-layer CLIPTextModel over the word tokenizer of :mod:`i2i.demo.tokenizer`.
"""

from __future__ import annotations

from typing import Any

from i2i.demo.data import IMAGE_SIZE

VAE_FACTOR = 2
LATENT_SIZE = IMAGE_SIZE // VAE_FACTOR
# Channels and attention heads per resolution (diffusers calls the heads ``attention_head_dim``). One head per
# attention, so a head is as wide as its block: 32, 64, 96, 96 channels (SD 1.x: 8 heads of 40, 80, 160, 160).
# Ctrl-X's appearance transfer reads a correspondence softmax(q k^T / sqrt(d)) between normalised features; with
# version 2's narrow heads (1, 2, 4, 8 heads: 32, 32, 16, 8 channels) it stayed close to uniform but not uniform
# (entropy 3.6 of the 4.16 maximum at 8 x 8 tokens), which adds a blurred copy of the features onto themselves and
# turned outputs into blobs (docs/demo-model.md). Wider heads give sharper correspondences, as on SD.
BLOCK_CHANNELS = (32, 64, 96, 96)
ATTENTION_HEADS = (1, 1, 1, 1)


def build_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64),
                         layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=IMAGE_SIZE,
                         mid_block_add_attention=False)


def build_unet(cross_dim: int = 64) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=BLOCK_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=cross_dim, attention_head_dim=ATTENTION_HEADS, norm_num_groups=32)


def build_text_encoder(tokenizer: Any, hidden: int = 64) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=tokenizer.model_max_length,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(cfg)


def ddim_scheduler() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                         steps_offset=1, prediction_type="epsilon")


def make_pipeline(vae: Any, text_encoder: Any, tokenizer: Any, unet: Any) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=ddim_scheduler(), safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)


# The settings the model folder recommends (``i2i_<method>.json``, read by the library as defaults; flags win).
# Chosen on the tuning split of docs/demo-protocol.md only; docs/freecontrol.md and docs/ctrlx.md give each reason.
RECOMMENDED_SETTINGS: dict[str, dict] = {
    "freecontrol": {"num_inference_steps": 50, "structure_weight": 3000.0, "n_components": 16,
                    "inversion_steps": 200, "mask_threshold": 0.0, "negative_prompt": "outline",
                    "bases": {"num_inference_steps": 50, "negative_prompt": "", "n_components": 16,
                              "block": "up_blocks.2"}},
    "ctrlx": {"num_inference_steps": 25, "guidance_scale": 7.5, "structure_schedule": 0.3,
              "appearance_schedule": 0.0, "eta": 0.0, "positive_prompt": "", "negative_prompt": "outline"},
    "generate": {"num_inference_steps": 25, "negative_prompt": "outline"},
}
