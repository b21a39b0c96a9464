"""The demo model's tokenizer, data and training (a few steps; the real run is never done in tests)."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from i2i.demo.data import GENERIC_PROMPT, VOCABULARY, sample
from i2i.demo.tokenizer import build_tokenizer, word_merges
from i2i.demo.train import train
from i2i.demo.train_config import DemoTrainConfig
from i2i.errors import UsageError
from i2i.shapes import nearest_colour, read_shape, render_mask

TINY = DemoTrainConfig(vae_steps=3, vae_batch=4, vae_eval_images=16, dataset_size=16, unet_steps=4, unet_batch=4,
                       eval_every=4, eval_steps=1, checkpoint_every=2)


def test_every_vocabulary_word_is_one_token():
    tok = build_tokenizer(VOCABULARY, 32)
    for word in VOCABULARY:
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    ids = tok("a red circle").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) == 5
    generic = tok(GENERIC_PROMPT.format("square")).input_ids
    assert len(generic) <= 32 and tok.unk_token_id not in generic[1:-1]
    # unknown words still tokenize (character by character) and decode back
    odd = tok("zebra!", add_special_tokens=False).input_ids
    assert len(odd) > 1 and tok.decode(odd).replace(" ", "") == "zebra!"
    assert tok.model_max_length == 32


def test_merges_do_not_disturb_earlier_words():
    merges = word_merges(["quality", "square", "re", "red", "green"])
    assert len(merges) == len(set(merges))
    tok = build_tokenizer(["quality", "square", "re", "red", "green"], 16)
    assert tok.convert_ids_to_tokens(tok("square green", add_special_tokens=False).input_ids) == \
        ["square</w>", "green</w>"]


def test_tokenizer_round_trip(tmp_path):
    from transformers import CLIPTokenizer

    tok = build_tokenizer(VOCABULARY, 32)
    tok.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = "an outline of a triangle"
    assert again(text).input_ids == tok(text).input_ids and again.model_max_length == 32


def test_samples_are_deterministic_and_readable():
    a, b = sample(12, seed=3), sample(12, seed=3)
    assert a.caption == b.caption and a.image.tobytes() == b.image.tobytes()
    kinds = {"outline": 0, "filled": 0}
    looks = {"fills": set(), "tinted": 0, "second": 0, "no colour": 0}
    for i in range(300):   # every filled scene reads as its shape and colour (patterns and shades included)
        s = sample(i)
        kinds[s.style] += 1
        assert s.spec.shape in s.caption
        if s.style == "outline":
            assert s.caption.startswith("an outline of")
            continue
        reading = read_shape(s.image)           # tints stay within the reader's white threshold
        assert reading.shape == s.spec.shape and reading.colour == s.spec.colour, (i, s.caption)
        if s.caption.startswith("a ") and len(s.caption.split()) == 3:
            assert s.spec.colour in s.caption
        looks["fills"].add(s.scene.fill)
        looks["tinted"] += s.scene.background[0] != (255, 255, 255)
        looks["second"] += s.scene.second is not None
        looks["no colour"] += s.spec.colour not in s.caption
    assert 20 < kinds["outline"] < 70
    filled = kinds["filled"]
    assert looks["fills"] == {"solid", "stripes", "checks"}
    # a second object is tried in 25 % of the filled scenes; some find no room
    assert 0.4 < looks["tinted"] / filled < 0.7 and 0.08 < looks["second"] / filled < 0.3
    assert 0.3 < looks["no colour"] / filled < 0.5       # the colour varies within those captions


def test_twin_scenes_share_the_main_objects_look_and_leave_other_scenes_alone():
    twins = 0
    for i in range(200):
        plain, with_twins = sample(i, seed=5), sample(i, seed=5, twin_share=0.5)
        assert sample(i, seed=5, twin_share=0.0).image.tobytes() == plain.image.tobytes()
        if with_twins.scene is None or not with_twins.scene.twin:     # every other sample is the plain one
            assert with_twins.caption == plain.caption and with_twins.image.tobytes() == plain.image.tobytes()
            continue
        twins += 1
        main, twin = with_twins.scene.main, with_twins.scene.second
        assert main == plain.spec and twin.colour == main.colour and main.colour not in with_twins.caption
        assert with_twins.scene.fill == plain.scene.fill and with_twins.scene.background == plain.scene.background
        pixels = np.asarray(with_twins.image).reshape(-1, 3).astype(int)
        inside = render_mask(twin, 64).reshape(-1) & ~render_mask(main, 64).reshape(-1)
        twin_colour = np.median(pixels[inside], axis=0)       # the twin is drawn in the main object's colour
        assert nearest_colour(tuple(int(c) for c in twin_colour)) == main.colour, i
    assert 40 < twins < 90                                  # half of the ~170 filled scenes, less those with no room
    with pytest.raises(UsageError, match="twin_share"):
        DemoTrainConfig(twin_share=1.5)
    with pytest.raises(UsageError, match="vae_eval_images"):
        DemoTrainConfig(vae_eval_images=0)


def test_pairs_share_one_look_in_two_layouts():
    from i2i.demo.data import pair_sample

    for i in range(12):
        first, second = pair_sample(i, seed=3)
        again = pair_sample(i, seed=3)
        assert again[0].image.tobytes() == first.image.tobytes() and again[1].caption == second.caption
        assert first.spec.colour == second.spec.colour and first.spec.colour not in first.caption
        a, b = first.scene, second.scene
        assert (a.background, a.fill, a.shade, a.period, a.angle) == (b.background, b.fill, b.shade, b.period, b.angle)
        assert a.second is None and b.second is None and first.spec != second.spec
        for s in (first, second):          # each image shows its object in that colour
            pixels = np.asarray(s.image).reshape(-1, 3).astype(int)[render_mask(s.spec, 64).reshape(-1)]
            assert nearest_colour(tuple(int(c) for c in np.median(pixels, axis=0))) == s.spec.colour
    assert sample(7, seed=3).image.tobytes() == sample(7, seed=3, twin_share=0.0).image.tobytes()
    with pytest.raises(UsageError, match="pair_share"):
        DemoTrainConfig(pair_share=-0.1)
    with pytest.raises(UsageError, match="pair_count"):
        DemoTrainConfig(pair_share=0.5, pair_count=0)


def test_paired_self_attention_sees_the_partner_and_nothing_else():
    from i2i.demo.build import build_unet
    from i2i.demo.paired_attention import paired

    torch.manual_seed(0)
    unet = build_unet().eval()
    x, t, text = torch.randn(4, 4, 32, 32), torch.tensor([500] * 4), torch.randn(4, 5, 64)
    with torch.no_grad():
        plain = unet(x, t, text).sample
        with paired(unet, 0):
            assert torch.equal(unet(x, t, text).sample, plain)
        with paired(unet, 2):
            out = unet(x, t, text).sample
            x2 = x.clone()
            x2[1] = torch.randn(4, 32, 32)                 # another partner for row 0; rows 2 and 3 are single
            moved = unet(x2, t, text).sample
        assert torch.allclose(unet(x, t, text).sample, plain)      # the processors are restored
    assert torch.allclose(out[2:], plain[2:], atol=1e-5) and torch.allclose(moved[2:], plain[2:], atol=1e-5)
    assert (out[0] - plain[0]).abs().max() > 1e-3 and (moved[0] - out[0]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="two by two"):
        with paired(unet, 3):
            pass


def test_match_loss_by_hand():
    from types import SimpleNamespace

    from i2i.ctrlx.control import normalize_tokens
    from i2i.demo.correspondence import match_loss, region_tokens

    torch.manual_seed(0)
    eye = torch.nn.Linear(3, 3, bias=False)
    eye.weight.data = torch.eye(3)
    attn = SimpleNamespace(to_q=eye, to_k=eye, heads=1, scale=0.5)
    hidden = torch.randn(2, 4, 3)                                  # two rows of a 2 x 2 token grid
    cover = torch.tensor([[[1.0, 0.6], [0.0, 0.2]], [[0.0, 0.0], [0.4, 0.9]]])
    obj = region_tokens(cover, 4)
    assert obj.tolist() == [[True, True, False, False], [False, False, False, True]]
    normed = normalize_tokens(hidden)
    expected = []
    for r, p in ((0, 1), (1, 0)):
        a = torch.softmax(normed[r] @ normed[p].T * 0.5, dim=-1)
        own = [-torch.log(a[i][obj[p] == obj[r][i]].sum()) for i in range(4)]
        expected.append((torch.stack([own[i] for i in range(4) if obj[r][i]]).mean() +
                         torch.stack([own[i] for i in range(4) if not obj[r][i]]).mean()) / 2)
    got = match_loss(attn, hidden, obj, torch.tensor([1, 0]))
    assert torch.allclose(got, torch.stack(expected).mean(), atol=1e-6)
    # a row whose partner has no object at this grid is left out; nothing left: 0
    none = torch.zeros(2, 2, 2)
    assert match_loss(attn, hidden, region_tokens(none, 4), torch.tensor([1, 0])) == 0


def test_matching_reads_ctrlx_layers_without_changing_the_unet():
    from i2i.ctrlx.layers import control_layers
    from i2i.demo.build import build_unet
    from i2i.demo.correspondence import matching

    torch.manual_seed(0)
    unet = build_unet().eval()
    x, t, text = torch.randn(6, 4, 32, 32), torch.tensor([500] * 6), torch.randn(6, 5, 64)
    cover = torch.zeros(4, 32, 32)
    cover[:, 4:12, 4:12] = 1.0
    cover[1, :, :] = cover[0].roll(12, dims=1)           # another place for row 1's object
    plain = unet(x, t, text).sample
    with matching(unet, None) as none:
        assert none is None
    with matching(unet, cover) as m:
        out = unet(x, t, text).sample
    assert torch.allclose(out, plain, atol=1e-5)           # the attention itself is plain
    assert len(m.losses) == 2 * len(control_layers(unet).appearance_attn)
    assert all(loss.requires_grad and 0 < loss < 20 for loss in m.losses)
    with pytest.raises(ValueError, match="groups of 4"):
        with matching(unet, cover[:2]):
            pass
    with pytest.raises(UsageError, match="groups of four"):
        DemoTrainConfig(unet_batch=8, pair_share=0.25, match_weight=0.1)
    assert DemoTrainConfig(unet_batch=8, pair_share=0.5, match_weight=0.1).pair_rows == 4


def test_the_match_loss_can_be_learnt():
    from i2i.demo.build import build_unet
    from i2i.demo.correspondence import match_loss, region_tokens

    torch.manual_seed(0)
    attn = build_unet().down_blocks[1].attentions[0].transformer_blocks[0].attn1      # 16 x 16 tokens
    cover = torch.zeros(4, 32, 32)
    for row, (top, left) in enumerate(((2, 2), (18, 14), (6, 20), (16, 4))):
        cover[row, top:top + 10, left:left + 10] = 1.0
    obj = region_tokens(cover, 256)
    hidden = torch.randn(4, 256, attn.to_q.in_features)
    hidden[obj] += 0.5 * torch.randn(attn.to_q.in_features)          # an object the features can tell apart
    opt = torch.optim.Adam([*attn.to_q.parameters(), *attn.to_k.parameters()], lr=1e-2)
    partner = torch.arange(4) ^ 2
    losses = []
    for _ in range(20):
        loss = match_loss(attn, hidden, obj, partner)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]


def test_a_paired_fine_tune_starts_from_a_pipeline_folder(tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    first = train(tmp_path / "base", TINY, threads=1)
    tune = DemoTrainConfig(**{**TINY.__dict__, "init_from": str(first), "pair_share": 0.5, "pair_count": 4,
                              "unet_steps": 2, "eval_every": 2})
    out = train(tmp_path / "tune", tune, threads=1)
    assert not (tmp_path / "tune" / "vae.pt").exists()            # no VAE stage: the folder's VAE is reused
    base = UNet2DConditionModel.from_pretrained(first / "unet").state_dict()
    tuned = _weights(tmp_path / "tune")
    assert tuned["step"] == 2 and any(not torch.equal(base[k], tuned["unet"][k]) for k in base)
    assert max((base[k] - tuned["unet"][k]).abs().max() for k in base) < 0.05     # two small steps from it
    vae, again = (AutoencoderKL.from_pretrained(f / "vae") for f in (first, out))
    assert vae.config.scaling_factor == again.config.scaling_factor
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in vae.state_dict().items())
    states = []
    for weight in (0.1, 1.0):                                  # 4 pair rows; the loss's weight moves the weights
        matched = DemoTrainConfig(**{**tune.__dict__, "unet_batch": 8, "match_weight": weight})
        train(tmp_path / f"match{weight}", matched, threads=1)
        states.append(_weights(tmp_path / f"match{weight}"))
    assert states[0]["step"] == 2 and 0 < states[0]["match_ema"] < 20
    assert any(not torch.equal(states[0]["unet"][k], states[1]["unet"][k]) for k in base)
    with pytest.raises(UsageError, match="not a pipeline folder"):
        train(tmp_path / "bad", DemoTrainConfig(**{**tune.__dict__, "init_from": str(tmp_path)}), threads=1)
    assert not (tmp_path / "bad").exists()


def _weights(run: Path) -> dict:
    return torch.load(run / "unet.pt", map_location="cpu", weights_only=False)


def test_training_writes_a_loadable_sd1_shaped_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    from i2i.demo.model import demo_model_path

    out = train(tmp_path / "run", TINY, threads=1)
    meta = json.loads((out / "i2i_demo.json").read_text())
    assert meta["unet_steps_done"] == 4 and 0 <= meta["eval"]["shape_accuracy"] <= 1
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log][-1] == "unet_eval"
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert pipe.tokenizer.model_max_length == 32 and pipe.scheduler.config.steps_offset == 1
    modules = dict(pipe.unet.named_modules())
    for block in ("down_blocks.0", "down_blocks.1", "down_blocks.2", "up_blocks.1", "up_blocks.2", "up_blocks.3",
                  "mid_block"):        # self-attention wherever SD 1.x has it, and not where it has none
        assert f"{block}.attentions.0.transformer_blocks.0.attn1" in modules, block
    assert "down_blocks.3.attentions.0" not in modules and "up_blocks.0.attentions.0" not in modules
    img = pipe("a red circle", num_inference_steps=2, height=64, width=64,
               generator=torch.Generator().manual_seed(0)).images[0]
    assert img.size == (64, 64)
    for method in ("freecontrol", "ctrlx", "generate"):     # the shipped model's recommended settings, rewritten
        name = f"i2i_{method}.json"
        assert json.loads((out / name).read_text()) == json.loads((demo_model_path() / name).read_text())


def test_stopped_and_resumed_training_equals_a_straight_run(tmp_path):
    straight = tmp_path / "straight"
    train(straight, TINY, threads=1)
    train(tmp_path / "resumed", TINY, threads=1, stop_after=2)
    assert _weights(tmp_path / "resumed")["step"] == 2
    with pytest.raises(UsageError, match="--resume"):               # never restarted over an existing run
        train(tmp_path / "resumed", TINY, threads=1)
    with pytest.raises(UsageError, match="unet_steps"):             # nor resumed with other settings
        train(tmp_path / "resumed", DemoTrainConfig(**{**TINY.__dict__, "unet_steps": 5}), resume=True)
    out = train(tmp_path / "resumed", resume=True, threads=1, out=tmp_path / "shipped")
    assert out == tmp_path / "shipped" and (out / "model_index.json").is_file()
    a, b = _weights(straight), _weights(tmp_path / "resumed")
    assert a["step"] == b["step"] == 4
    for part in ("unet", "ema_unet", "text_encoder", "ema_text"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), (part, name)
    assert np.isfinite(b["loss_ema"])


def test_bf16_unet_stage_resumes_exactly_and_differs_from_fp32(tmp_path):
    bf16 = DemoTrainConfig(**{**TINY.__dict__, "unet_precision": "bf16"})
    train(tmp_path / "straight", bf16, threads=1, stop_after=2)
    train(tmp_path / "resumed", bf16, threads=1, stop_after=1)
    train(tmp_path / "resumed", resume=True, threads=1, stop_after=2)
    train(tmp_path / "fp32", TINY, threads=1, stop_after=2)
    a, b, c = (_weights(tmp_path / name) for name in ("straight", "resumed", "fp32"))
    assert all(torch.equal(a["unet"][k], b["unet"][k]) for k in a["unet"])
    assert all(v.dtype == torch.float32 for v in a["unet"].values())          # autocast only: weights stay fp32
    assert not all(torch.equal(a["unet"][k], c["unet"][k]) for k in a["unet"])
    with pytest.raises(UsageError, match="fp32 or bf16"):             # refused before the VAE stage runs
        DemoTrainConfig(**{**TINY.__dict__, "unet_precision": "fp16"})


def test_resume_refuses_a_checkpoint_of_another_layout(tmp_path):
    train(tmp_path / "run", TINY, threads=1, stop_after=2)
    state = _weights(tmp_path / "run")
    name = next(k for k in state["unet"] if k.endswith("conv_in.weight"))
    state["unet"][name] = state["unet"][name][:16]        # as an older layout with narrower first blocks saved it
    torch.save(state, tmp_path / "run" / "unet.pt")
    with pytest.raises(UsageError, match="another UNet layout.*conv_in.weight"):
        train(tmp_path / "run", resume=True, threads=1)


def test_training_command_line_help_and_refusal(tmp_path):
    run = [sys.executable, "-m", "i2i.demo.train"]
    proc = subprocess.run(run + ["--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--resume" in proc.stdout and "--stop-after" in proc.stdout
    proc = subprocess.run(run + ["--run", str(tmp_path / "none"), "--resume"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "holds no demo training run" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(run + ["--run", str(tmp_path / "fp16"), "--unet-precision", "fp16"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "fp32 or bf16" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "fp16").exists()                          # refused before a run folder is made
    proc = subprocess.run(run + ["--run", str(tmp_path / "tune"), "--init-from", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "not a pipeline folder" in proc.stderr and not (tmp_path / "tune").exists()


@pytest.mark.parametrize("script", ["protocol.py", "figure.py", "ctrlx_layers.py", "readme_seeds.py"])
def test_demo_tools_run_as_scripts(script):
    import subprocess

    path = Path(__file__).resolve().parents[1] / "examples" / "demo" / script
    proc = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--help" in proc.stdout, proc.stderr[-1000:]


def test_readme_seeds_reads_colour_shape_and_place_against_the_sketch():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "demo"))
    from conditions import SKETCHES
    from readme_seeds import EXAMPLES, reading, summary

    from i2i.shapes import render

    example = EXAMPLES["ctrlx"]
    spec = SKETCHES[example.sketch]
    on = reading(render(dataclasses.replace(spec, colour="blue"), 64), example)
    assert on == {"colour": "blue", "shape": "square", "iou": 1.0}
    off = reading(render(dataclasses.replace(spec, colour="green", cx=0.7, cy=0.7), 64), example)
    assert off["colour"] == "green" and off["iou"] < 0.2
    assert summary([{"seed": 0, **on}, {"seed": 1, **off}], example).endswith("all three in 1")


def test_ctrlx_layer_probe_measures_reach_and_restores_the_transfer():
    import i2i.ctrlx.control as control

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "demo"))
    from ctrlx_layers import object_attention, oracle_transfer, reach, recording

    assert reach(torch.eye(64)[None]) == 0.0                                   # each token attends to itself
    assert reach(torch.full((1, 64, 64), 1 / 64)) == pytest.approx(0.517, abs=1e-3)    # uniform over 8 x 8
    original, stats = control.adain_transfer, []
    with recording(stats):
        hidden = torch.randn(16, 8)
        q = k = torch.randn(1, 16, 8)
        out = control.adain_transfer(hidden, hidden, q, k, 8 ** -0.5)
    assert control.adain_transfer is original and torch.equal(out, original(hidden, hidden, q, k, 8 ** -0.5))
    tokens, entropy, most, ratio, far = stats[0]
    assert tokens == 16 and 0 < entropy < most == pytest.approx(np.log(16)) and ratio > 0 and 0 < far < 1
    output, look = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    output[:32], look[:, :16] = True, True               # on an 8 x 8 grid: the top half; the left quarter
    assert object_attention(torch.full((2, 64, 64), 1 / 64), output, look) == pytest.approx((0.25, 0.25, 0.25))
    sharp = torch.zeros(1, 64, 64)
    sharp[0, :32, 0], sharp[0, 32:, 63] = 1, 1           # the top half looks at a token of the object, the rest away
    assert object_attention(sharp, output, look) == pytest.approx((1.0, 0.0, 0.25))
    with recording(stats, {"output": output, "appearance": look}):
        control.adain_transfer(torch.randn(64, 8), torch.randn(64, 8), q[:, :1].expand(1, 64, 8),
                               k[:, :1].expand(1, 64, 8), 8 ** -0.5)
    assert stats[-1][5:] == pytest.approx((0.25, 0.25, 0.25))        # equal keys: uniform attention
    # the region-true correspondence: the top half takes the left quarter's statistics, the rest the others'
    hidden, look_features = torch.randn(64, 8), torch.randn(64, 8)
    out = oracle_transfer(hidden, look_features, output, look)
    grid = look_features.view(8, 8, 8)
    inside, outside = grid[:, :2].reshape(-1, 8), grid[:, 2:].reshape(-1, 8)
    normed = control.normalize_tokens(hidden[None])[0]
    for rows, region in ((slice(0, 32), inside), (slice(32, 64), outside)):
        std = (region.pow(2).mean(0) - region.mean(0).pow(2)).sqrt()
        assert torch.allclose(out[rows], std * normed[rows] + region.mean(0), atol=1e-5)
    masks = {"output": output, "appearance": look, "oracle": (1, 2), "calls": 0, "layers": 1}
    with recording(stats, masks):          # only the second transfer step is replaced
        outs = [control.adain_transfer(hidden, look_features, q[:, :1].expand(1, 64, 8), k[:, :1].expand(1, 64, 8),
                                       8 ** -0.5) for _ in range(3)]
    assert torch.allclose(outs[1], out) and torch.equal(outs[0], outs[2]) and not torch.allclose(outs[0], out)


def test_min_snr_weights_hand_computed():
    from i2i.demo.unet_stage import snr_weight

    a = torch.tensor([0.99, 0.5, 0.01])                       # SNR 99, 1, 0.0101
    torch.testing.assert_close(snr_weight(a, 5.0), torch.tensor([5 / 99, 1.0, 1.0]))
    torch.testing.assert_close(snr_weight(a, 0.0), torch.ones(3))
