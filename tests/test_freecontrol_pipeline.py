"""The FreeControl pipeline on tiny SD / SDXL pipelines built in code (random weights, CPU, offline)."""

import dataclasses
import warnings

import pytest
import torch
from tiny_sd import one_thread, sd_pipeline, sdxl_pipeline  # noqa: F401  (one_thread: autouse fixture)
from tiny_sd import warning_recorder as Recorder

from i2i.errors import UsageError
from i2i.freecontrol.config import BasesConfig, FreeControlConfig
from i2i.freecontrol.features import FeatureStore, recording
from i2i.freecontrol.pipeline import FreeControlPipeline
from i2i.shapes import ShapeSpec, render

PROMPT = "a photo of a red square"
INV = "an outline of a square"
# (the official negative prompt is longer than the tiny tokenizer's 16 positions: a short one avoids the warning)
SMALL = FreeControlConfig(num_inference_steps=6, inversion_steps=6, negative_prompt="worst quality, low quality",
                          bases=BasesConfig(num_images=2, num_inference_steps=6, batch_size=2))


@pytest.fixture(scope="module")
def condition():
    return render(ShapeSpec("square", "red", 0.3, 0.34, 0.2), 32, style="outline")


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return FreeControlPipeline(sd_pipeline(0), device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))


def run(pipe, condition, config=SMALL, **kwargs):
    kwargs.setdefault("inversion_prompt", INV)
    kwargs.setdefault("subject", "square;square")
    return pipe(PROMPT, condition, config, **kwargs)


def plain(base, config, noise):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return base(PROMPT, negative_prompt=config.negative_prompt, latents=noise.clone(), output_type="latent",
                    num_inference_steps=config.num_inference_steps, guidance_scale=config.guidance_scale).images


def test_zero_weights_reproduce_plain_sampling_exactly(sd, condition):
    cfg = dataclasses.replace(SMALL, structure_weight=0.0, appearance_weight=0.0)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    out = run(sd, condition, cfg, latents=noise)
    assert torch.equal(out.latents, plain(sd.base, cfg, noise))
    assert torch.equal(out.latents, out.unguided_latents)
    assert out.guided_steps == 0 and out.trajectory is None      # nothing to invert without guidance
    # the same seed gives the same noise as the seeded call
    seeded = run(sd, condition, cfg, seed=7)
    assert torch.equal(seeded.latents, plain(sd.base, cfg, sd.initial_noise(1, 32, torch.Generator().manual_seed(7))))


def test_guided_run_returns_guided_image_and_unguided_sibling(sd, condition):
    out = run(sd, condition, seed=3)
    assert len(out.images) == len(out.unguided) == 1 and out.images[0].size == (32, 32)
    assert out.guided_steps == int(0.6 * 6) and not out.skipped_steps
    assert all(torch.isfinite(torch.tensor(out.energies)))
    assert not torch.allclose(out.latents, out.unguided_latents, atol=1e-3)   # guidance changed the sample
    noise = sd.initial_noise(1, 32, torch.Generator().manual_seed(3))
    assert torch.allclose(out.unguided_latents, plain(sd.base, SMALL, noise), atol=1e-4)   # sibling = plain
    assert out.mask is not None and out.mask.shape == (4, 4) and set(out.mask.unique().tolist()) <= {0.0, 1.0}
    again = run(sd, condition, seed=3)
    assert torch.equal(again.latents, out.latents)                  # deterministic, caches included
    assert again.trajectory.cache_hit and again.bases.cache_hit


def test_energy_gradient_is_a_descent_direction(sd, condition):
    cfg = SMALL
    scheduler = sd.make_scheduler()
    scheduler.set_timesteps(cfg.num_inference_steps)
    ts = [int(t) for t in scheduler.timesteps]
    traj = sd.invert(condition, INV, cfg, ts)
    bases = sd.semantic_bases("square", cfg.bases, 32)
    layers = list(bases.layers)
    feats = sd.condition_features(traj, ts[:3], sd.encode_text([INV], 32), bases, layers, cfg, [3, 4])
    cond = sd.encode_text([PROMPT], 32, negative="")
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = scheduler.timesteps[1]
    coords, mask = feats[1]
    cfg0 = dataclasses.replace(cfg, appearance_weight=0.0)           # appearance off: structure energy only
    x_a = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    live = FeatureStore(record_keys=False)
    with recording(sd.unet, live, layers):                           # as __call__ installs them, once
        eps, eps_a, grad, e0 = sd._guided_step(x, None, t, cond, layers, bases, coords, mask, 1.0, cfg0, live)
        _, _, _, e1 = sd._guided_step(x - 1e-2 * grad / grad.norm(), None, t, cond, layers, bases, coords, mask,
                                      1.0, cfg0, live)
        eps2, eps_a2, grad2, _ = sd._guided_step(x, x_a, t, cond, layers, bases, coords, mask, 1.0, cfg, live)
        sd.one_call = True              # the other layout: the same numbers, up to the rounding of other batch sizes
        try:
            for a in (x_a, None):
                got = sd._guided_step(x, a, t, cond, layers, bases, coords, mask, 1.0, cfg if a is not None else cfg0,
                                      live)
                want = (eps2, eps_a2, grad2) if a is not None else (eps, eps_a, grad)
                cosine = torch.nn.functional.cosine_similarity(got[2].flatten(), want[2].flatten(), dim=0)
                assert torch.allclose(got[0], want[0], atol=1e-4) and cosine > 0.999
                assert float(got[2].norm()) == pytest.approx(float(want[2].norm()), rel=0.02)
                assert (got[1] is None) == (want[1] is None)
                assert got[1] is None or torch.allclose(got[1], want[1], atol=1e-5)
        finally:
            sd.one_call = False
    assert grad.abs().sum() > 0 and e1 < e0
    # The pass that gives the energy's keys also gives the guided sample's prediction: the plain CFG one.
    assert eps_a is None
    assert torch.allclose(eps, sd.cfg_noise(x, t, cond, cfg.guidance_scale), atol=1e-5)
    assert torch.is_grad_enabled()                                   # grad mode restored after the pass
    # With a sibling: its prediction is its plain CFG one too.
    assert torch.allclose(eps2, eps, atol=1e-5)
    assert torch.allclose(eps_a2, sd.cfg_noise(x_a, t, cond, cfg.guidance_scale), atol=1e-5)
    assert not torch.allclose(grad2, grad)                            # the appearance energy now contributes


def test_inversion_then_regeneration_reconstructs_the_condition_latent(tmp_path, condition):
    base = sd_pipeline(0)
    with torch.no_grad():         # a smooth (small) noise prediction, as a trained model's is consistent over t
        base.unet.conv_out.weight.mul_(0.02)
        base.unet.conv_out.bias.mul_(0.02)
    pipe = FreeControlPipeline(base, device="cpu", cache_dir=tmp_path)
    cfg = FreeControlConfig(num_inference_steps=25, inversion_steps=25, structure_weight=0.0, img2img=True,
                            guidance_scale=1.0)
    out = pipe(INV, condition, cfg, inversion_prompt=INV)
    clean = out.trajectory.clean
    error = float((out.latents - clean).norm() / clean.norm())
    from_noise = float((out.unguided_latents - clean).norm() / clean.norm())
    assert error < 0.08 and from_noise > 10 * error


def test_img2img_starts_from_the_inverted_latent(sd, condition):
    cfg = dataclasses.replace(SMALL, img2img=True)
    out = run(sd, condition, cfg, seed=4)
    x_T = out.trajectory.at(out.timesteps[0])
    assert torch.equal(out.initial_latents, x_T)
    assert out.mask is None                                           # image-to-image drops the mask
    assert torch.equal(out.trajectory.latents[-1:], x_T)              # the largest stored timestep is the first
    same = run(sd, condition, dataclasses.replace(cfg, appearance_same_latent=True, structure_weight=0.0), seed=4)
    assert torch.equal(same.latents, same.unguided_latents)           # both start from x_T, nothing guides


def test_bases_cache_hits_misses_and_separates_models(tmp_path, condition):
    cfg = SMALL.bases
    a = FreeControlPipeline(sd_pipeline(0), device="cpu", cache_dir=tmp_path)
    first = a.semantic_bases("cat", cfg, 32)
    again = a.semantic_bases("cat", cfg, 32)
    assert not first.cache_hit and again.cache_hit and again.path == first.path
    assert first.path.with_name(first.path.name + ".lock").is_file()     # built under its lock (entry_lock)
    assert torch.equal(first.bases, again.bases)
    assert first.layers == tuple(f"up_blocks.1.attentions.{j}.transformer_blocks.0.attn1" for j in range(3))
    assert first.means.shape[:2] == (int(round(0.6 * 6)), 3)
    other_concept = a.semantic_bases("dog", cfg, 32)
    assert not other_concept.cache_hit and other_concept.path != first.path
    other_seeds = a.semantic_bases("cat", dataclasses.replace(cfg, seed=1), 32)
    assert not other_seeds.cache_hit and other_seeds.path != first.path
    b = FreeControlPipeline(sd_pipeline(1), device="cpu", cache_dir=tmp_path)     # another model, same cache
    assert b.model_id != a.model_id
    from_b = b.semantic_bases("cat", cfg, 32)
    assert not from_b.cache_hit and from_b.path != first.path
    assert not torch.allclose(from_b.means, first.means)
    # the inversion cache is separated by model too
    ts = [901, 801]
    assert a.invert(condition, INV, SMALL, ts).cache_path != b.invert(condition, INV, SMALL, ts).cache_path


def test_timestep_keyed_bases_serve_a_different_step_count(tmp_path, condition):
    pipe = FreeControlPipeline(sd_pipeline(0), device="cpu", cache_dir=tmp_path)
    bases_cfg = BasesConfig(num_images=2, num_inference_steps=10, batch_size=2)
    bases = pipe.semantic_bases("square", bases_cfg, 32)
    assert bases.timesteps.tolist() == [901, 801, 701, 601, 501, 401]
    cfg = FreeControlConfig(num_inference_steps=7, inversion_steps=7, bases=bases_cfg)
    out = run(pipe, condition, cfg)
    assert out.bases.cache_hit and out.bases.path == bases.path    # the 10-step analysis serves 7 steps
    guided = out.timesteps[:out.guided_steps]
    assert guided == [853, 711, 569, 427]
    assert [int(bases.timesteps[bases.index(t)]) for t in guided] == [901, 701, 601, 401]
    assert not torch.allclose(out.latents, out.unguided_latents, atol=1e-3)


def test_corrupt_cache_entries_are_rebuilt(tmp_path, condition):
    pipe = FreeControlPipeline(sd_pipeline(0), device="cpu", cache_dir=tmp_path)
    first = run(pipe, condition, seed=2)
    for path in (first.trajectory.cache_path, first.bases.path):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    reporter = Recorder()
    pipe._condition_memo.clear()
    second = run(pipe, condition, seed=2, reporter=reporter)
    assert not second.trajectory.cache_hit and not second.bases.cache_hit
    assert sum("is corrupt or stale; rebuilding it" in w for w in reporter.warnings) == 2
    assert torch.equal(second.latents, first.latents)
    third = run(pipe, condition, seed=2)
    assert third.trajectory.cache_hit and third.bases.cache_hit


def test_condition_runs_once_per_timestep_and_gradients_only_for_the_guided_sample(sd, condition):
    batches = []
    hook = sd.unet.conv_in.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        first = run(sd, condition, seed=11, num_images=2)
        n_first = list(batches)
        batches.clear()
        second = run(sd, condition, seed=12, num_images=2)
        n_second = list(batches)
        batches.clear()
        third = run(sd, condition, seed=12, num_images=2, unguided=False)
    finally:
        hook.remove()
    guided = first.guided_steps
    from i2i.freecontrol.guidance import warmup_weight

    weighted = sum(1 for i in range(guided) if warmup_weight(i, SMALL.structure_weight, SMALL.warmup_steps) > 0)
    # second call: inversion and condition features are cached. On guided steps with a non-zero weight, one
    # no-grad pass of the rows that need no gradient (guided|negative, sibling|negative, sibling|prompt: 3 x 2)
    # and one pass with gradients of the 2 guided|prompt rows; on the other steps one CFG pass of both (2 x 2 x 2)
    assert n_second.count(1) == 0
    assert n_second.count(6) == weighted and n_second.count(2) == weighted
    assert n_second.count(8) == SMALL.num_inference_steps - weighted
    assert n_first.count(1) >= guided                               # condition passes (plus any inversion)
    assert not torch.equal(first.latents, second.latents)
    # without the unguided siblings they stop after the guidance window: CFG of the guided samples only (2 x 2)
    assert batches.count(4) == SMALL.num_inference_steps - guided
    assert third.unguided == [] and third.unguided_latents is None
    assert torch.allclose(third.latents, second.latents, atol=1e-5)


def test_one_call_layout_gives_the_same_images(sd, condition):
    assert sd.one_call is False                                      # the CPU default: two calls per guided step
    two = run(sd, condition, seed=13, num_images=2)
    batches = []
    hook = sd.unet.conv_in.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    sd.one_call = True
    try:
        one = run(sd, condition, seed=13, num_images=2)
    finally:
        sd.one_call = False
        hook.remove()
    # every step is one call of 8 rows: guided|negative, sibling|negative, sibling|prompt, guided|prompt (x 2)
    assert batches == [8] * SMALL.num_inference_steps
    # the same up to the rounding of other batch sizes (amplified by this random model's large guidance steps)
    assert float((one.latents - two.latents).norm() / two.latents.norm()) < 1e-2
    assert torch.allclose(one.unguided_latents, two.unguided_latents, atol=1e-4)
    assert one.energies == pytest.approx(two.energies, rel=5e-3)
    assert FreeControlPipeline(sd.base, model_id="x", device="cpu", one_call=True).one_call


def test_one_call_default_per_device_and_model():
    from i2i.freecontrol.pipeline import default_one_call

    assert default_one_call(torch.device("cuda"), is_sdxl=False)
    assert not default_one_call(torch.device("cuda"), is_sdxl=True)      # memory: 22.8 GB instead of 11.6 GB
    assert not default_one_call(torch.device("cpu"), is_sdxl=False)


def test_nan_gradient_skips_guidance_with_a_warning(sd, condition, monkeypatch):
    from i2i.freecontrol import guidance

    monkeypatch.setattr(guidance, "structure_energy", lambda c, g, m, p: g.sum() * float("nan"))
    reporter = Recorder()
    out = run(sd, condition, seed=3, reporter=reporter)
    skipped = [w for w in reporter.warnings if "the guidance gradient is not finite" in w]
    assert out.skipped_steps and len(skipped) == len(out.skipped_steps)
    assert torch.isfinite(out.latents).all()
    assert torch.allclose(out.latents, out.unguided_latents, atol=1e-4)    # every guided update was skipped


def test_invalid_settings_are_usage_errors(sd, condition):
    for bad in (dict(num_inference_steps=0), dict(structure_weight=-1.0), dict(appearance_weight=-0.1),
                dict(guidance_end=1.5), dict(mask_threshold=1.0)):
        with pytest.raises(UsageError):
            run(sd, condition, dataclasses.replace(SMALL, **bad))
    with pytest.raises(UsageError, match="multiple of"):
        run(sd, condition, dataclasses.replace(SMALL, size=36))
    unit = sd.size_unit
    for size in (17000, 16384 + unit, -unit):                   # past the 16,384 px limit, a multiple or not
        with pytest.raises(UsageError, match=f"--size {size}: must be a multiple of {unit} from {unit} to 16,384 "
                                             "pixels for this model"):
            sd.check_size(size)
    with pytest.raises(UsageError, match="does not occur"):
        run(sd, condition, subject="lion;lion")


def test_v_prediction_model(tmp_path, condition):
    pipe = FreeControlPipeline(sd_pipeline(0, prediction_type="v_prediction"), device="cpu", cache_dir=tmp_path)
    out = run(pipe, condition, seed=1)
    assert torch.isfinite(out.latents).all() and not out.skipped_steps
    zero = dataclasses.replace(SMALL, structure_weight=0.0)
    noise = pipe.initial_noise(1, 32, torch.Generator().manual_seed(1))
    assert torch.equal(run(pipe, condition, zero, latents=noise).latents, plain(pipe.base, zero, noise))


def test_sdxl_shaped_model(tmp_path, condition):
    base = sdxl_pipeline(0)
    pipe = FreeControlPipeline(base, device="cpu", cache_dir=tmp_path)
    assert pipe.is_sdxl and pipe.feature_block == "up_blocks.0"
    out = run(pipe, condition, seed=1)
    # up_blocks.0: 2 attentions x 2 transformer blocks (SDXL: 3 x 10), every attn1 of the block
    assert len(out.bases.layers) == 4 and all(n.startswith("up_blocks.0.") for n in out.bases.layers)
    assert out.bases.layers[-1] == "up_blocks.0.attentions.1.transformer_blocks.1.attn1"
    assert torch.isfinite(out.latents).all() and not out.skipped_steps
    assert not torch.allclose(out.latents, out.unguided_latents, atol=1e-3)
    zero = dataclasses.replace(SMALL, structure_weight=0.0)
    noise = pipe.initial_noise(1, 32, torch.Generator().manual_seed(1))
    assert torch.allclose(run(pipe, condition, zero, latents=noise).latents, plain(base, zero, noise), atol=1e-6)


def test_bf16_precision_runs(tmp_path, condition):
    pipe = FreeControlPipeline(sd_pipeline(0), device="cpu", precision="bf16", cache_dir=tmp_path)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    out = run(pipe, condition, seed=1)
    assert torch.isfinite(out.latents).all() and out.latents.dtype == torch.float32


def test_truncated_pass_records_the_same_keys_as_a_full_forward(sd):
    from i2i.freecontrol.features import FeatureStore, block_attention_layers, recording, run_until_recorded

    layers, _ = block_attention_layers(sd.unet, "up_blocks.1")
    cond = sd.encode_text([PROMPT], 32)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    full, cut = FeatureStore(), FeatureStore(stop_after=layers[-1])
    with torch.no_grad():
        with recording(sd.unet, full, layers):
            eps = sd.unet_forward(x, 500, cond)
        with recording(sd.unet, cut, layers):
            run_until_recorded(sd.unet, cut, x, 500, **cond.unet_kwargs())
        assert torch.equal(sd.unet_forward(x, 500, cond), eps)   # the original processors are back
    assert list(cut.keys) == layers and all(torch.equal(full.keys[n], cut.keys[n]) for n in layers)
    assert full.keys[layers[0]].shape == (1, 16, 32)             # [B, HW, C] before the head split


@pytest.mark.parametrize("img2img", [False, True])
def test_condition_of_another_aspect_ratio_is_not_squashed(sd, img2img):
    wide = render(ShapeSpec("circle", "blue", 0.5, 0.5, 0.3), 32, style="outline").resize((64, 32))   # 2:1
    assert sd.output_shape((64, 32), 32) == (16, 32)            # long side 32, short side a multiple of 16
    assert sd.output_shape((30, 100), 64) == (64, 16)           # at least one unit, rounded
    assert sd.output_shape((32, 32), 32) == (32, 32)
    out = run(sd, wide, dataclasses.replace(SMALL, img2img=img2img), seed=4)
    assert out.images[0].size == (32, 16) and out.unguided[0].size == (32, 16)      # PIL: (width, height)
    assert out.trajectory.clean.shape[-2:] == (4, 8)
    if not img2img:
        assert out.mask is not None and out.mask.shape[1] == 2 * out.mask.shape[0]


def test_prompt_longer_than_the_tokenizer_limit_warns_and_runs(sd, condition):
    reporter = Recorder()
    long_prompt = "a photo of a red square " + "with a simple background " * 6
    out = sd(long_prompt, condition, SMALL, inversion_prompt=INV, subject="square;square", seed=5, reporter=reporter)
    warned = [w for w in reporter.warnings if "the prompt is" in w]
    assert len(warned) == 1 and "tokens long" in warned[0] and "the rest is ignored" in warned[0]
    assert torch.isfinite(out.latents).all()
    reporter = Recorder()
    run(sd, condition, seed=5, reporter=reporter)
    assert not [w for w in reporter.warnings if "tokens long" in w]


def test_bases_that_do_not_fit_the_model_are_refused_before_the_inversion(tmp_path, condition, monkeypatch):
    from i2i.errors import CheckpointError
    from i2i.freecontrol.bases import SemanticBases, save_bases
    pipe = FreeControlPipeline(sd_pipeline(0), device="cpu", cache_dir=tmp_path)
    good = pipe.semantic_bases("square", SMALL.bases, 32)
    other = [n.replace("up_blocks.1", "up_blocks.2") for n in good.layers]     # 32-channel keys, not 64
    broken = {
        "channels": dataclasses.replace(good, means=good.means[..., :8], bases=good.bases[..., :8]),
        "no principal components": dataclasses.replace(good, bases=good.bases[:, :, :0]),
        "lacks": dataclasses.replace(good, layers=("down_blocks.9.attentions.0.transformer_blocks.0.attn1",) * 3),
        "keys of": dataclasses.replace(good, layers=tuple(other)),
        "not finite": dataclasses.replace(good, bases=good.bases * float("nan")),
        "shape": dataclasses.replace(good, layers=good.layers[:1]),
    }
    inverted = []
    monkeypatch.setattr(pipe, "invert", lambda *a, **k: inverted.append(1))
    for i, (message, bases) in enumerate(broken.items()):
        with pytest.raises(CheckpointError, match=message):
            run(pipe, condition, bases=bases)
        path = save_bases(bases, tmp_path / f"b{i}.safetensors")            # the same, read from a file
        job = {"prompt": PROMPT, "inversion_prompt": INV, "subject": None, "concept": None, "seed": 0,
               "num_images": 1, "img2img": False, "appearance_prompt": None}
        with pytest.raises(CheckpointError, match=f"b{i}.safetensors.*{message}"):
            pipe.run_job(job, {"condition": condition}, SMALL, bases=path)
    assert not inverted


def test_a_cache_that_cannot_be_written_is_warned_about_and_the_run_goes_on(tmp_path, condition):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")               # every cache write under it fails (as on a read-only disk)
    pipe = FreeControlPipeline(sd_pipeline(0), device="cpu", cache_dir=blocked)
    reporter = Recorder()
    out = run(pipe, condition, seed=2, reporter=reporter)
    assert sum("the cache cannot be written" in w for w in reporter.warnings) == 2, reporter.warnings
    assert out.trajectory.cache_path is None and out.bases.path is None
    cached = run(FreeControlPipeline(sd_pipeline(0), device="cpu", cache_dir=tmp_path / "cache"), condition, seed=2)
    assert torch.equal(out.latents, cached.latents)


def test_more_components_than_the_bases_hold_is_warned_once(sd, condition):
    bases = sd.semantic_bases("square", SMALL.bases, 32)
    few = dataclasses.replace(bases, bases=bases.bases[:, :, :3])
    config = dataclasses.replace(SMALL, n_components=5, appearance_components=4)
    reporter = Recorder()
    run(sd, condition, config, bases=few, reporter=reporter)
    run(sd, condition, config, bases=few, reporter=reporter)        # the same bases again: no second warning
    noted = [w for w in reporter.warnings if "components" in w]
    assert len(noted) == 2, noted
    assert "--components 5 is more than the 3 principal components" in noted[0] and "3 are used" in noted[0]
    assert "--appearance-components 4 is more than the 3 components in use" in noted[1]
    reporter = Recorder()
    run(sd, condition, dataclasses.replace(SMALL, n_components=3, appearance_components=2), bases=few,
        reporter=reporter)
    assert not [w for w in reporter.warnings if "components" in w]
