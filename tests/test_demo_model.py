"""The bundled demo model: it ships small, loads offline, follows prompts, and both diffusion methods control it.

Small versions of the protocol's tuning split (docs/demo-protocol.md: the first cases of each kind, with the model
folder's settings, as ``python examples/demo/protocol.py --split tuning`` runs them), read off the pixels by
:func:`i2i.shapes.read_object`. The thresholds sit below what these cases gave when the settings were tuned (noted
beside each), so that a case that moves with the host's thread count cannot flip a test on its own; the targets
themselves are measured on the held-out split by the protocol runner, not here.
"""

import dataclasses
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from i2i.demo.model import demo_model_path
from i2i.demo.protocol import cases, score
from i2i.shapes import ShapeSpec, iou, read_object, render, render_mask

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "demo"))
from conditions import SKETCHES  # noqa: E402  (the shipped example conditions)

STRUCTURE = cases("tuning", ("structure",))[:6]        # shuffled: every shape, several colours
FC_STRUCTURE = cases("tuning", ("structure",))[:9]     # FreeControl's results are all or nothing per case: more
APPEARANCE = cases("tuning", ("appearance",))[:4]


@pytest.fixture(scope="module")
def fc_pipe(demo_cache):
    from i2i.freecontrol.pipeline import FreeControlPipeline

    return FreeControlPipeline.from_pretrained(demo_model_path(), device="cpu", cache_dir=demo_cache / "freecontrol")


@pytest.fixture(scope="module")
def cx_pipe():
    from i2i.ctrlx.pipeline import CtrlXPipeline

    return CtrlXPipeline.from_pretrained(demo_model_path(), device="cpu")


def test_demo_model_ships_small_and_loads_offline():
    from diffusers import StableDiffusionPipeline

    folder = demo_model_path()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 20 * 10**6
    base = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    assert base.unet.up_blocks[1].attentions[0].transformer_blocks[0].attn2 is not None   # cross-attention
    assert base.tokenizer.model_max_length == base.text_encoder.config.max_position_embeddings
    assert base.scheduler.config.steps_offset == 1
    modules = dict(base.unet.named_modules())
    for block in ("down_blocks.0", "down_blocks.1", "down_blocks.2", "up_blocks.1", "up_blocks.2", "up_blocks.3",
                  "mid_block"):        # self-attention wherever SD 1.x has it (version 2)
        assert f"{block}.attentions.0.transformer_blocks.0.attn1" in modules, block
    meta = json.loads((folder / "i2i_demo.json").read_text())
    assert meta["unet_steps_done"] == meta["train_config"]["unet_steps"]      # a finished run


def test_plain_samples_follow_the_prompt():
    from i2i.generate.pipeline import GeneratePipeline

    pipe = GeneratePipeline.from_pretrained(demo_model_path(), device="cpu")
    readings = [(case, read_object(pipe(case.prompt, seed=case.seed).images[0])) for case in STRUCTURE]
    assert sum(r.shape == case.sketch.shape for case, r in readings) >= 5
    assert sum(r.colour == case.colour for case, r in readings) >= 5


def _freecontrol(pipe, case, **kwargs):
    return pipe(case.prompt, case.sketch_image(), pipe.default_config(), seed=case.seed,
                appearance=case.appearance_image(), **kwargs)


@pytest.mark.heavy
def test_freecontrol_puts_the_shape_on_the_sketch_in_the_prompts_colour(fc_pipe):
    outs = [_freecontrol(fc_pipe, case, unguided=True) for case in FC_STRUCTURE]
    guided = [score(case, out.images[0]) for case, out in zip(FC_STRUCTURE, outs)]
    unguided = [score(case, out.unguided[0]) for case, out in zip(FC_STRUCTURE, outs)]
    # tuning split: 0.74 (seven cases at 0.83-0.99, two at 0.01 and 0.19) against 0.10 unguided
    assert statistics.fmean(g["iou"] for g in guided) >= 0.6
    assert statistics.fmean(g["iou"] for g in guided) >= statistics.fmean(u["iou"] for u in unguided) + 0.45
    assert sum(g["colour_ok"] for g in guided) >= 8                                # 9 of 9


@pytest.mark.heavy
def test_freecontrol_takes_an_appearance_images_colour_and_keeps_the_layout(fc_pipe):
    # The prompt names no colour ("a {shape}"); the appearance image's object is elsewhere in the frame.
    scores = [score(case, _freecontrol(fc_pipe, case).images[0]) for case in APPEARANCE]
    assert sum(s["colour_ok"] for s in scores) >= 3                                # tuning split: 4 of 4
    assert statistics.fmean(s["iou"] for s in scores) >= 0.55                     # tuning split: 0.75


def test_ctrlx_puts_the_shape_on_the_structure_in_the_prompts_colour(cx_pipe):
    def run(case):
        return score(case, cx_pipe(case.prompt, case.sketch_image(), case.appearance_image(), seed=case.seed,
                                   decode_branches=False).images[0])

    structure = [run(c) for c in STRUCTURE]
    assert statistics.fmean(s["iou"] for s in structure) >= 0.6                   # tuning split: 0.73
    assert sum(s["colour_ok"] for s in structure) >= 4                             # 5 of 6
    # The model's settings turn the appearance transfer off (it breaks this model's layouts): the image is
    # ignored with a warning, and the layout holds.
    with pytest.warns(UserWarning, match="appearance image is ignored"):
        appearance = [run(c) for c in APPEARANCE]
    assert statistics.fmean(s["iou"] for s in appearance) >= 0.55                 # tuning split: 0.71


def test_img2img_keeps_the_layout(fc_pipe):
    spec = ShapeSpec("square", "blue", 0.6, 0.42, 0.22)
    config = dataclasses.replace(fc_pipe.default_config(), img2img=True)
    out = fc_pipe("a red square", render(spec, 64), config, inversion_prompt="a blue square", seed=0)
    assert iou(read_object(out.images[0]).mask, render_mask(spec, 64)) >= 0.7


def test_cli_without_model_uses_the_demo(tmp_path, demo_cache):
    env = dict(os.environ, HF_HUB_OFFLINE="1", I2I_CACHE_DIR=str(demo_cache))
    env.pop("I2I_FREECONTROL_MODEL", None)
    # The condition described as FreeControl intends (docs/freecontrol.md): without it this seed draws a hollow
    # square on the sketch and a filled one where the unguided sample has it.
    proc = subprocess.run([sys.executable, "-m", "i2i", "freecontrol", "--prompt", "a blue square", "--condition",
                           str(ROOT / "examples" / "conditions" / "square_sketch.png"), "--inversion-prompt",
                           "an outline of a square", "--save-unguided", "--out", str(tmp_path / "out"), "--json",
                           "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    record, summary = (json.loads(line) for line in proc.stdout.splitlines()[-2:])
    assert summary["kind"] == "summary" and summary["generated"] == 1
    target = render_mask(SKETCHES["square_sketch.png"], 64)
    guided, unguided = (read_object(Image.open(record[k])) for k in ("image", "unguided"))
    assert iou(guided.mask, target) > iou(unguided.mask, target)
