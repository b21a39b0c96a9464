"""Benchmark: FreeControl's cost over plain classifier-free-guided sampling, and its analysis / inversion costs.

For one model, size, step count and device:

- ``plain``: ``i2i generate``'s pipeline (CFG, the same DDIM scheduler, steps and size; its latents equal diffusers'
  own ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline``'s, ``tests/test_generate.py``) on the same loaded
  model, decoded to an image by the same float32 VAE as FreeControl's;
- ``guided``: one FreeControl image as the CLI makes it without ``--save-unguided`` (structure and appearance
  energies on the default 60 % of steps; the unguided sibling runs only as long as the appearance energy needs
  it) with the semantic bases and the condition's inversion already cached, i.e. the cost of every run after the
  first for a concept and a condition; also with the sibling finished (``--save-unguided``);
- ``bases`` and ``inversion``: the analysis stage and the condition's DDIM inversion, cold (computed and cached)
  and warm (read back from the cache), and the first ``guided`` call (condition features included).

With ``--breakdown``, one more guided call is timed piece by piece (every UNet call, grouped by its number of
rows and whether it records gradients, and the backward pass; each synchronised on a GPU), which shows where the
time over plain sampling goes.

The reported ratio is median(guided) / median(plain) over ``--repeats`` runs after a warm-up; the plain and guided
runs alternate. Peak memory is the CUDA allocator's peak per stage on a GPU, and the process's peak RSS on a CPU.

Models: ``demo`` (the bundled model), a local diffusers folder, or ``sd15-random`` / ``sdxl-random``: SD 1.5- and
SDXL-shaped pipelines with random weights (speed and memory do not depend on the weight values; the tokenizer is a
small generated one, the text encoders have the real shapes). Usage:

    python examples/benchmarks/freecontrol_speed.py --model demo --steps 50 --repeats 3
    python examples/benchmarks/freecontrol_speed.py --model sd15-random --device cuda --precision bf16 --steps 50
    python examples/benchmarks/freecontrol_speed.py --model sdxl-random --device cuda --precision bf16 --steps 50
    python examples/benchmarks/freecontrol_speed.py --model demo --one-call both --breakdown   # both layouts, timed

Prints a table and one JSON line (machine, versions, settings, results).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import resource
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

CONDITION = Path(__file__).resolve().parents[1] / "conditions" / "square_sketch.png"
WORDS = ("a", "an", "photo", "of", "red", "blue", "square", "with", "simple", "background", "best", "quality",
         "extremely", "detailed", "outline", "sketch", "low", "worst", "cropped", "fewer", "digits", "lowres", "bad")


def _clip(tok, hidden: int, layers: int, heads: int, projection: int | None = None, act: str = "quick_gelu"):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, max_position_embeddings=77, hidden_act=act,
                         projection_dim=projection or hidden, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def _sd_vae(sample_size: int, scaling: float):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                         layers_per_block=2, latent_channels=4, sample_size=sample_size, scaling_factor=scaling)


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def random_pipeline(kind: str, device: torch.device, dtype: torch.dtype):
    """An SD 1.5- (``sd15-random``) or SDXL-shaped (``sdxl-random``) diffusers pipeline with random weights, built
    directly on ``device`` in ``dtype`` (the VAE in float32)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    from i2i.demo.tokenizer import build_tokenizer

    tok = build_tokenizer(WORDS, 77)
    torch.manual_seed(0)
    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")
        if kind == "sd15-random":
            unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
            pipe = StableDiffusionPipeline(
                vae=_sd_vae(512, 0.18215), text_encoder=_clip(tok, 768, 12, 12).to(dtype), tokenizer=tok,
                unet=unet.to(dtype), scheduler=_scheduler(), safety_checker=None, feature_extractor=None,
                image_encoder=None, requires_safety_checker=False)
        elif kind == "sdxl-random":
            unet = UNet2DConditionModel(
                sample_size=128, block_out_channels=(320, 640, 1280),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816)
            pipe = StableDiffusionXLPipeline(
                vae=_sd_vae(1024, 0.13025), text_encoder=_clip(tok, 768, 12, 12).to(dtype),
                text_encoder_2=_clip(tok, 1280, 32, 20, projection=1280, act="gelu").to(dtype), tokenizer=tok,
                tokenizer_2=tok, unet=unet.to(dtype), scheduler=_scheduler(), add_watermarker=False)
        else:
            raise SystemExit(f"unknown random model {kind!r}")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB on Linux


def _timed(fn, device: torch.device) -> tuple[float, float]:
    _reset_peak(device)
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0, _peak_gb(device)


def breakdown(pipe, run, device: torch.device) -> dict[str, dict[str, float]]:
    """Time one call of ``run`` (a guided FreeControl call on ``pipe``) piece by piece: seconds and count of the
    UNet calls per (rows, gradients) and of the backward passes; "other" is the rest (scheduler, energy, decode)."""
    seconds: dict[str, float] = collections.defaultdict(float)
    counts: collections.Counter = collections.Counter()

    def timed(key_of, fn):
        def wrapper(*args, **kwargs):
            key = key_of(*args)                # before the call: the recording processors switch gradients off
            _sync(device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            _sync(device)
            seconds[key] += time.perf_counter() - t0
            counts[key] += 1
            return out
        return wrapper

    def unet_key(latents, *_):
        grad = torch.is_grad_enabled() and latents.requires_grad
        return f"UNet call, {latents.shape[0]} row(s), {'with' if grad else 'no'} gradients"

    original_grad = torch.autograd.grad
    pipe.unet_forward = timed(unet_key, pipe.unet_forward)     # instance attribute, removed below
    torch.autograd.grad = timed(lambda *_: "backward (autograd.grad)", original_grad)
    try:
        total, _ = _timed(run, device)
    finally:
        del pipe.unet_forward
        torch.autograd.grad = original_grad
    out = {k: {"seconds": round(v, 3), "count": counts[k]} for k, v in sorted(seconds.items())}
    out["other"] = {"seconds": round(total - sum(seconds.values()), 3), "count": 1}
    out["total"] = {"seconds": round(total, 3), "count": 1}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo", help="demo, sd15-random, sdxl-random or a diffusers folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--size", type=int, default=None, help="output side (default: the model's native size)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--bases-steps", type=int, default=None, help="analysis steps (default: --steps)")
    ap.add_argument("--seed-images", type=int, default=20)
    ap.add_argument("--inversion-steps", type=int, default=None,
                    help="default: the model's recommended value, else the official 999")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    ap.add_argument("--breakdown", action="store_true", help="also time one guided call piece by piece")
    ap.add_argument("--one-call", default="auto", choices=("auto", "on", "off", "both"),
                    help="guided-step layout: one UNet call per step (on), two (off), the device's default "
                         "(auto: one on CUDA for SD 1.x/2.x), or both side by side")
    ap.add_argument("--text-encoder-device", default=None, help="where the text encoders run (default: --device)")
    args = ap.parse_args()

    from i2i.device import resolve_device
    from i2i.freecontrol.config import FreeControlConfig, model_config
    from i2i.generate import GenerateConfig, GeneratePipeline
    from i2i.diffusion.loading import DTYPES
    from i2i.freecontrol.pipeline import FreeControlPipeline
    from i2i.images import load_image

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = DTYPES[args.precision]
    cache = tempfile.mkdtemp(prefix="i2i-bench-")
    t0 = time.perf_counter()
    if args.model.endswith("-random"):
        base = random_pipeline(args.model, device, dtype)
        pipe = FreeControlPipeline(base, model_id=args.model, device=device, precision=args.precision,
                                   cache_dir=cache, text_encoder_device=args.text_encoder_device)
        config = FreeControlConfig()
    else:
        from i2i.demo.model import demo_model_path

        folder = str(demo_model_path()) if args.model == "demo" else args.model
        pipe = FreeControlPipeline.from_pretrained(folder, device=device, precision=args.precision, cache_dir=cache,
                                                   text_encoder_device=args.text_encoder_device)
        base = pipe.base
        config = model_config(folder)
    _sync(device)
    load_s = time.perf_counter() - t0

    size = args.size or pipe.default_size
    config = dataclasses.replace(
        config, num_inference_steps=args.steps, size=size,
        inversion_steps=args.inversion_steps or config.inversion_steps,
        bases=dataclasses.replace(config.bases, num_images=args.seed_images,
                                  num_inference_steps=args.bases_steps or args.steps))
    prompt, concept = "a photo of a red square", "square"
    condition = load_image(CONDITION).resize((size, size))
    scheduler = pipe.make_scheduler()
    scheduler.set_timesteps(config.num_inference_steps)
    ts = [int(t) for t in scheduler.timesteps]

    results: dict[str, dict[str, float]] = {}

    def stage(name: str, fn) -> None:
        sec, peak = _timed(fn, device)
        results[name] = {"seconds": round(sec, 3), "peak_gb": round(peak, 3)}

    def analysis():          # computed and cached, not read from the model folder's own bases (i2i_bases/)
        folder, pipe.model_folder = pipe.model_folder, None
        try:
            return pipe.semantic_bases(concept, config.bases, size)
        finally:
            pipe.model_folder = folder

    stage("bases (cold)", analysis)
    stage("bases (cached)", lambda: pipe.semantic_bases(concept, config.bases, size))
    stage("inversion (cold)", lambda: pipe.invert(condition, prompt, config, ts))
    stage("inversion (cached)", lambda: pipe.invert(condition, prompt, config, ts))
    stage("guided, first call", lambda: pipe(prompt, condition, config, concept=concept, seed=0))

    sampler = GeneratePipeline(base, model_id=pipe.model_id, device=pipe.device, precision=pipe.precision,
                               text_encoder_device=args.text_encoder_device)      # the same loaded modules
    plain_config = GenerateConfig(num_inference_steps=config.num_inference_steps,
                                  guidance_scale=config.guidance_scale, negative_prompt=config.negative_prompt,
                                  size=size)

    def plain(seed: int):      # i2i generate's sampling loop and the same float32 VAE decode as FreeControl's
        return sampler(prompt, plain_config, seed=seed).images

    def guided(seed: int, unguided: bool = False):       # the CLI's default: no --save-unguided
        return pipe(prompt, condition, config, concept=concept, seed=seed, unguided=unguided).images

    default_layout = pipe.one_call
    layouts = {"auto": [default_layout], "on": [True], "off": [False], "both": [False, True]}[args.one_call]
    tags = {True: "one call", False: "two calls"}

    # Plain and guided runs alternate, so that a slow phase of the machine hits both sides alike.
    plain(0)                                                  # warm-ups
    for one_call in layouts:
        pipe.one_call = one_call
        guided(0)
    runs: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for r in range(args.repeats):
        runs["plain"].append(_timed(lambda: plain(r + 1), device))
        for one_call in layouts:
            pipe.one_call = one_call
            runs[f"guided {one_call}"].append(_timed(lambda: guided(r + 1), device))
            runs[f"sibling {one_call}"].append(_timed(lambda: guided(r + 1, True), device))

    def summary(name: str) -> dict[str, float]:
        return {"seconds": round(statistics.median(s for s, _ in runs[name]), 3),
                "peak_gb": round(max(p for _, p in runs[name]), 3)}

    results["plain CFG sampling"] = summary("plain")
    plain_s = statistics.median(s for s, _ in runs["plain"])
    ratios: dict[str, float] = {}
    pieces: dict[str, dict] = {}
    for one_call in layouts:
        label = f" [{tags[one_call]}]" if len(layouts) > 1 else ""
        results["guided (cached bases + inversion)" + label] = summary(f"guided {one_call}")
        results["guided + unguided sibling (--save-unguided)" + label] = summary(f"sibling {one_call}")
        ratios[tags[one_call]] = statistics.median(s for s, _ in runs[f"guided {one_call}"]) / plain_s
        if args.breakdown:
            pipe.one_call = one_call
            pieces[tags[one_call]] = breakdown(pipe, lambda: guided(0), device)
    pipe.one_call = default_layout
    reported = layouts[0] if len(layouts) == 1 else default_layout      # "both": the device's default layout
    ratio = ratios[tags[reported]]

    import diffusers
    import transformers

    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    settings = {"model": args.model, "device": str(device), "precision": args.precision, "size": size,
                "steps": config.num_inference_steps, "guided_steps": config.guided_steps,
                "bases_steps": config.bases.num_inference_steps, "seed_images": config.bases.num_images,
                "inversion_steps": config.inversion_steps, "repeats": args.repeats,
                "default_layout": "one call" if default_layout else "two calls", "load_seconds": round(load_s, 2)}
    width = max(map(len, results)) + 2
    print(f"{'stage':<{width}}{'seconds':>10}{'peak GB':>10}")
    for name, r in results.items():
        print(f"{name:<{width}}{r['seconds']:>10.3f}{r['peak_gb']:>10.2f}")
    for tag, table in pieces.items():
        print(f"\none guided call [{tag}], piece by piece (plain sampling: "
              f"{plain_s / config.num_inference_steps:.4f} s per step)")
        for name, r in table.items():
            print(f"{name:<{width + 10}}{r['seconds']:>10.3f}{r['count']:>6}")
    for tag, r in ratios.items():
        print(f"guided / plain [{tag}] = {r:.2f}")
    print(f"guided / plain = {ratio:.2f}  ({args.model}, {size}px, {config.num_inference_steps} steps, "
          f"{args.precision}, {device})")
    print(json.dumps({"benchmark": "freecontrol_speed", "machine": machine,
                      "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                                   "transformers": transformers.__version__, "python": platform.python_version()},
                      "settings": settings, "results": results, "guided_over_plain": round(ratio, 3),
                      "guided_over_plain_by_layout": {k: round(v, 3) for k, v in ratios.items()},
                      **({"breakdown": pieces} if pieces else {})}))


if __name__ == "__main__":
    main()
