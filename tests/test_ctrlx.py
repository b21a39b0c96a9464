"""Ctrl-X on tiny pipelines built in code (SD-shaped and SDXL-shaped, CPU, random weights): the control layer rule,
structure injection in the cond row on scheduled steps only, the AdaIN maths, re-noising through the scheduler's
own add_noise, and the SDXL path."""

import dataclasses
import math
import warnings

import pytest
import numpy as np
import torch
from tiny_sd import one_thread, sd_pipeline, sdxl_pipeline  # noqa: F401  (one_thread: autouse fixture)

from i2i.ctrlx.config import CtrlXConfig
from i2i.ctrlx.control import ControlState, CtrlXAttnProcessor, adain_transfer, normalize_tokens
from i2i.ctrlx.layers import control_layers
from i2i.ctrlx.pipeline import CtrlXPipeline, renoise
from i2i.shapes import ShapeSpec, render

FAST = CtrlXConfig(num_inference_steps=5, positive_prompt="", negative_prompt="")


def attn_names(block, attentions, layers=1):
    return [f"{block}.attentions.{j}.transformer_blocks.{k}.attn1" for j in attentions for k in range(layers)]


def test_layer_rule_reproduces_the_official_sdxl_map():
    from diffusers import UNet2DConditionModel

    # SDXL's block layout (2 layers per block, 3 decoder resnets/attentions), with tiny widths.
    unet = UNet2DConditionModel(
        sample_size=8, layers_per_block=2, block_out_channels=(8, 16, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2), cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4)
    layers = control_layers(unet)
    assert layers.structure_conv == ("up_blocks.0.resnets.0",)
    assert list(layers.structure_attn) == attn_names("up_blocks.0", [0, 1, 2], 2)
    assert list(layers.appearance_attn) == (attn_names("down_blocks.1", [0, 1]) + attn_names("down_blocks.2", [0, 1], 2)
                                            + attn_names("up_blocks.0", [1, 2], 2) + attn_names("up_blocks.1", [0, 1]))


def test_layer_rule_on_the_sd_layout():
    layers = control_layers(sd_pipeline().unet)        # down: CrossAttn x2, Down; up: Up, CrossAttn x2
    assert layers.structure_conv == ("up_blocks.1.resnets.0",)
    assert list(layers.structure_attn) == attn_names("up_blocks.1", [0, 1, 2])
    assert list(layers.appearance_attn) == (attn_names("down_blocks.0", [0, 1]) + attn_names("down_blocks.1", [0, 1])
                                            + attn_names("up_blocks.1", [1, 2]) + attn_names("up_blocks.2", [0, 1]))


def test_adain_with_uniform_attention_is_plain_adain():
    """q = 0 makes the attention uniform: every output token gets the appearance's mean and (biased) std."""
    torch.manual_seed(0)
    hidden, appearance = torch.randn(6, 4), torch.randn(5, 4) * 3 + 2
    q, k = torch.zeros(2, 6, 2), torch.randn(2, 5, 2)
    out = adain_transfer(hidden, appearance, q, k, scale=1.0)
    mean = appearance.mean(0)
    std = ((appearance ** 2).mean(0) - mean ** 2).sqrt()
    expected = std * (hidden - hidden.mean(0)) / hidden.std(0) + mean
    torch.testing.assert_close(out, expected)


def test_adain_with_one_hot_attention_copies_a_token():
    """Keys that single out one appearance token per output token: M is that token, S is 0."""
    hidden = torch.tensor([[1.0, 2.0], [3.0, 5.0], [0.0, -1.0]])
    appearance = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    q = torch.tensor([[[1.0], [-1.0], [1.0]]])          # one head, d = 1
    k = torch.tensor([[[1.0], [-1.0]]])
    out = adain_transfer(hidden, appearance, q, k, scale=100.0)
    torch.testing.assert_close(out, appearance[[0, 1, 0]], atol=1e-3, rtol=0)
    assert torch.isfinite(normalize_tokens(hidden[None])).all()


def _attention():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(1)
    return Attention(query_dim=8, heads=2, dim_head=4).eval()


def _plain(attn, qr, kr, vr):
    """Two-head attention of one row, by hand."""
    heads = lambda t: t.view(-1, 2, 4).transpose(0, 1)  # noqa: E731
    a = (heads(qr) @ heads(kr).transpose(-1, -2) / 2.0).softmax(-1)
    return attn.to_out[0]((a @ heads(vr)).transpose(0, 1).reshape(-1, 8))


def test_attention_processor_injects_structure_queries_and_keys_into_the_cond_row_only():
    attn = _attention()
    x = torch.randn(4, 6, 8)                              # rows: uncond, structure_cond, appearance_cond, cond
    state = ControlState(["uncond", "structure_cond", "appearance_cond", "cond"], True, True, False)
    out = CtrlXAttnProcessor(state, structure=True, appearance=False)(attn, x)
    q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)

    plain = lambda qr, kr, vr: _plain(attn, qr, kr, vr)  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(out[3], plain(q[1], k[1], v[3]))      # structure's map, the output's values
        torch.testing.assert_close(out[0], plain(q[0], k[0], v[0]))      # uncond untouched
        state.structure = False                                          # not scheduled: plain attention
        torch.testing.assert_close(CtrlXAttnProcessor(state, True, False)(attn, x)[3], plain(q[3], k[3], v[3]))


def test_appearance_correspondence_starts_from_the_structure_where_structure_is_injected():
    attn = _attention()
    x = torch.randn(4, 6, 8) * 2 + 1                     # rows: uncond, structure_cond, appearance_cond, cond
    state = ControlState(["uncond", "structure_cond", "appearance_cond", "cond"], True, True, True)
    with torch.no_grad():
        out = CtrlXAttnProcessor(state, structure=True, appearance=True)(attn, x)
        heads = lambda t: t.view(-1, 2, 4).transpose(0, 1)  # noqa: E731
        q = heads(attn.to_q(normalize_tokens(x[1:2]))[0])   # q-hat of the structure row
        k = heads(attn.to_k(normalize_tokens(x[2:3]))[0])   # k-hat of the appearance row
        hs = adain_transfer(x[3], x[2], q, k, attn.scale)
        # then the structure's queries and keys, the transferred input's values
        torch.testing.assert_close(out[3], _plain(attn, attn.to_q(x[1]), attn.to_k(x[1]), attn.to_v(hs)))


def test_appearance_transfer_elsewhere_uses_the_outputs_own_correspondence():
    attn = _attention()
    x = torch.randn(3, 6, 8) * 2 + 1                     # rows: uncond, appearance_cond, cond
    state = ControlState(["uncond", "appearance_cond", "cond"], True, False, True)
    with torch.no_grad():
        out = CtrlXAttnProcessor(state, structure=False, appearance=True)(attn, x)
        heads = lambda t: t.view(-1, 2, 4).transpose(0, 1)  # noqa: E731
        q = heads(attn.to_q(normalize_tokens(x[2:3]))[0])   # q-hat of the output's cond row
        k = heads(attn.to_k(normalize_tokens(x[1:2]))[0])
        hs = adain_transfer(x[2], x[1], q, k, attn.scale)
        torch.testing.assert_close(out[2], _plain(attn, attn.to_q(hs), attn.to_k(hs), attn.to_v(hs)))
        torch.testing.assert_close(out[0], _plain(attn, attn.to_q(x[0]), attn.to_k(x[0]), attn.to_v(x[0])))


def test_a_structure_led_correspondence_takes_the_structure_queries_in_every_appearance_layer():
    attn = _attention()
    x = torch.randn(4, 6, 8) * 2 + 1                     # rows: uncond, structure_cond, appearance_cond, cond
    rows = ["uncond", "structure_cond", "appearance_cond", "cond"]
    heads = lambda t: t.view(-1, 2, 4).transpose(0, 1)  # noqa: E731
    k = heads(attn.to_k(normalize_tokens(x[2:3]))[0])   # k-hat of the appearance row
    with torch.no_grad():
        for lead, source in (("structure", 1), ("output", 3)):
            state = ControlState(rows, True, True, True, correspondence=lead)
            out = CtrlXAttnProcessor(state, structure=False, appearance=True)(attn, x)   # not a structure layer
            q = heads(attn.to_q(normalize_tokens(x[source:source + 1]))[0])
            hs = adain_transfer(x[3], x[2], q, k, attn.scale)
            torch.testing.assert_close(out[3], _plain(attn, attn.to_q(hs), attn.to_k(hs), attn.to_v(hs)))
        # once structure injection has ended, the output leads again
        state = ControlState(rows, True, False, True, correspondence="structure")
        out = CtrlXAttnProcessor(state, structure=False, appearance=True)(attn, x)
        q = heads(attn.to_q(normalize_tokens(x[3:4]))[0])
        hs = adain_transfer(x[3], x[2], q, k, attn.scale)
        torch.testing.assert_close(out[3], _plain(attn, attn.to_q(hs), attn.to_k(hs), attn.to_v(hs)))


def _pipe(kind="sd"):
    base = sd_pipeline() if kind == "sd" else sdxl_pipeline()
    return CtrlXPipeline(base, device="cpu")


def _images():
    structure = render(ShapeSpec("square", "red", 0.35, 0.4, 0.2), 32, style="outline")
    appearance = render(ShapeSpec("circle", "red", 0.5, 0.5, 0.3), 32)
    return structure, appearance


def test_conv_injection_on_scheduled_steps_and_not_after():
    pipe = _pipe()
    seen = []
    # The first attention of the structure block reads the injected ResNet output.
    target = pipe.unet.up_blocks[1].attentions[0]
    handle = target.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    structure, appearance = _images()
    cfg = CtrlXConfig(num_inference_steps=5, structure_schedule=0.6, appearance_schedule=0.4, positive_prompt="",
                      negative_prompt="")
    try:
        out = pipe("a red square", structure, appearance, cfg, seed=0)
    finally:
        handle.remove()
    assert out.structure_steps == 3 and out.appearance_steps == 2
    assert out.rows[:2] == [["uncond", "structure_cond", "appearance_cond", "cond"]] * 2
    assert out.rows[2] == ["uncond", "structure_cond", "cond"] and out.rows[3:] == [["uncond", "cond"]] * 2
    for i, x in enumerate(seen):
        rows = out.rows[i]
        cond, uncond = x[rows.index("cond")], x[rows.index("uncond")]
        if i < 3:
            torch.testing.assert_close(cond, x[rows.index("structure_cond")])
            assert not torch.allclose(uncond, cond)
        else:
            assert len(rows) == 2 and not torch.allclose(uncond, cond)


def test_self_recurrence_calls_run_without_control():
    pipe = _pipe()
    batches = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    structure, _ = _images()
    cfg = CtrlXConfig(num_inference_steps=10, self_recurrence=(0.1, 0.3, 2), positive_prompt="", negative_prompt="")
    try:
        pipe("a red square", structure, None, cfg, seed=0)
    finally:
        handle.remove()
    # steps 1 and 2 are each followed by two plain-CFG calls on [uncond, cond]
    assert batches[:8] == [5, 5, 2, 2, 5, 2, 2, 5]      # 5 rows: the appearance is generated alongside
    # the generated appearance leaves the batch after its 6 steps (2 rows on), and is finished for its picture
    assert batches[8:14] == [5, 5, 2, 2, 2, 2] and batches[14:] == [2] * 4


def test_a_generated_branch_leaves_the_batch_after_its_schedule_and_its_picture_is_a_plain_sample():
    pipe = _pipe()
    structure, _ = _images()
    cfg = CtrlXConfig(num_inference_steps=5, structure_schedule=0.6, appearance_schedule=0.4, eta=0.0,
                      appearance_guidance_scale=3.0, positive_prompt="", negative_prompt="")
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    out = pipe("a red square", structure, None, cfg, latents=noise)
    full = ["appearance_uncond", "uncond", "structure_cond", "appearance_cond", "cond"]
    assert out.rows[:2] == [full] * 2
    assert out.rows[2] == ["uncond", "structure_cond", "cond"] and out.rows[3:] == [["uncond", "cond"]] * 2
    quiet = pipe("a red square", structure, None, cfg, latents=noise, decode_branches=False)
    assert torch.equal(out.latents, quiet.latents)      # finishing the branch's picture does not touch the output
    # the appearance picture: plain CFG sampling of the prompt from the same x_T at the branch's scale
    scheduler = pipe.make_scheduler()
    scheduler.set_timesteps(5)
    text = pipe.encode_text(["a red square"], (32, 32), negative="")
    x = noise * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(pipe.cfg_noise(x, t, text, 3.0), t, x, eta=0.0).prev_sample
        plain = np.asarray(pipe.decode(x)[0], dtype=np.int16)
    assert np.abs(plain - np.asarray(out.appearance[0], dtype=np.int16)).max() <= 1


def test_the_correspondence_setting_reaches_the_transfer_and_nothing_else():
    pipe = _pipe()
    structure, appearance = _images()
    led = dataclasses.replace(FAST, correspondence="structure")
    a = pipe("a red square", structure, appearance, FAST, seed=4, decode_branches=False)
    b = pipe("a red square", structure, appearance, led, seed=4, decode_branches=False)
    assert not torch.equal(a.latents, b.latents)
    off = dataclasses.replace(FAST, appearance_schedule=0.0)        # no transfer: nothing for it to change
    c = pipe("a red square", structure, None, off, seed=4, decode_branches=False)
    d = pipe("a red square", structure, None, dataclasses.replace(off, correspondence="structure"), seed=4,
             decode_branches=False)
    assert torch.equal(c.latents, d.latents)


def test_renoise_is_the_schedulers_forward_process(monkeypatch):
    pipe = _pipe()
    scheduler = pipe.make_scheduler()
    clean = torch.randn(1, 4, 8, 8)
    got = renoise(scheduler, clean, 501, torch.Generator().manual_seed(3))
    eps = torch.randn(clean.shape, generator=torch.Generator().manual_seed(3))
    a = scheduler.alphas_cumprod[501]
    torch.testing.assert_close(got, a.sqrt() * clean + (1 - a).sqrt() * eps)

    calls = []
    original = type(scheduler).add_noise

    def spy(self, x, noise, t):
        calls.append(int(t[0]))
        return original(self, x, noise, t)

    monkeypatch.setattr(type(scheduler), "add_noise", spy)
    structure, appearance = _images()
    out = pipe("a red square", structure, appearance, FAST, seed=0)
    # after each step but the last, both reference branches go to the *next* timestep with fresh noise
    assert calls == [t for t in out.timesteps[1:] for _ in range(2)]


def test_results_are_seeded_and_appearance_changes_the_output():
    pipe = _pipe()
    structure, appearance = _images()
    a = pipe("a red square", structure, appearance, FAST, seed=4)
    b = pipe("a red square", structure, appearance, FAST, seed=4)
    c = pipe("a red square", structure, None, FAST, seed=4)
    assert torch.equal(a.latents, b.latents) and not torch.equal(a.latents, c.latents)
    assert a.images[0].size == (32, 32) and len(c.appearance) == 1
    d = pipe("a red square", structure, appearance, FAST, seed=4, decode_branches=False)
    assert torch.equal(a.latents, d.latents) and d.structure == [] and d.appearance == []


def test_an_image_whose_schedule_controls_no_step_is_ignored_with_a_warning():
    pipe = _pipe()
    structure, appearance = _images()
    off = dataclasses.replace(FAST, appearance_schedule=0.0)
    with pytest.warns(UserWarning, match="the appearance image is ignored: appearance_schedule 0.0") as caught:
        a = pipe("a red square", structure, appearance, off, seed=4)
    assert caught[0].filename == __file__                              # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")                               # no image, nothing to warn about
        b = pipe("a red square", structure, None, off, seed=4)
    assert torch.equal(a.latents, b.latents)                         # the image changed nothing


def test_sdxl_path():
    pipe = _pipe("sdxl")
    assert pipe.layers.structure_conv == ("up_blocks.0.resnets.0",)
    structure, appearance = _images()
    wide = structure.resize((64, 32))                   # native size 32: the output is 32 x 16
    out = pipe("a red square", wide, appearance, FAST, seed=0, num_images=2)
    assert len(out.images) == 2 and out.images[0].size == (32, 16)
    assert math.isfinite(float(out.latents.abs().sum()))
    assert not torch.equal(out.latents[0], out.latents[1])


def test_bad_settings_are_usage_errors():
    from i2i.errors import UsageError

    with pytest.raises(UsageError):
        CtrlXConfig(structure_schedule=1.5).validate()
    with pytest.raises(UsageError, match="--correspondence must be one of output, structure"):
        CtrlXConfig(correspondence="appearance").validate()
    with pytest.raises(UsageError):
        _pipe()("  ", _images()[0], None, FAST)
