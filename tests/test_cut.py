"""CUT / FastCUT: PatchNCE math, the anti-aliased layers, one-sided training, resume and the CLI."""

import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from i2i.cyclegan.antialias import Downsample, Upsample
from i2i.cyclegan.config import DiscriminatorConfig, GeneratorConfig
from i2i.cyclegan.run_config import default_config, merge_config
from i2i.cyclegan.networks import define_D, define_G
from i2i.cyclegan.patchnce import PatchSampleMLP, patch_nce
from i2i.cyclegan.trainer import PeriodicHook, resolve_config, train


def tiny(run_dir, model="fastcut", **kw):
    fields = dict(run_dir=str(run_dir), generator={"ngf": 4}, discriminator={"ndf": 4}, shapes_count=8,
                  batch_size=2, n_epochs=1, n_epochs_decay=1, log_every=1, sample_every=3, save_every=3,
                  options={"num_patches": 16, "netf_nc": 8,
                           "flip_equivariance": model == "fastcut"})   # the reference's, so resume covers its RNG
    fields.update(kw)
    return merge_config(default_config(model, shapes=True), fields)


def test_patch_nce_matches_a_hand_computed_value():
    q = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tau = 0.07
    # row 0: positive q0.k0 = 0.6, negatives [masked -10, q0.k1 = 0.8]; row 1: positive q1.k1 = 0, negatives
    # [q1.k0 = 1, masked -10]
    rows = [(0.6, [-10.0, 0.8]), (0.0, [1.0, -10.0])]
    want = [-pos / tau + math.log(math.exp(pos / tau) + sum(math.exp(n / tau) for n in negs)) for pos, negs in rows]
    got = patch_nce(q, k, batch=1, tau=tau)
    assert torch.allclose(got, torch.tensor(want), atol=1e-4), (got, want)
    # two images of one patch each: the only negative is the masked diagonal
    got2 = patch_nce(q, k, batch=2, tau=tau)
    want2 = [-p / tau + math.log(math.exp(p / tau) + math.exp(-10 / tau)) for p in (0.6, 0.0)]
    assert torch.allclose(got2, torch.tensor(want2), atol=1e-4)


def test_projection_samples_the_same_locations_and_normalises():
    torch.manual_seed(0)
    netF = PatchSampleMLP([3, 5], nc=8)
    feats = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
    out, ids = netF(feats, num_patches=6)
    assert [o.shape for o in out] == [(12, 8), (8, 8)]          # 6 of 16 locations; all 4 of 4
    assert torch.allclose(out[0].norm(dim=1), torch.ones(12), atol=1e-5)
    again, _ = netF(feats, 6, ids)
    assert all(torch.equal(a, b) for a, b in zip(out, again))
    assert sorted(netF.state_dict()) == ["mlp_0.0.bias", "mlp_0.0.weight", "mlp_0.2.bias", "mlp_0.2.weight",
                                         "mlp_1.0.bias", "mlp_1.0.weight", "mlp_1.2.bias", "mlp_1.2.weight"]


def test_antialiased_layers_shapes_and_filters():
    x = torch.randn(2, 5, 8, 6)
    down, up = Downsample(5), Upsample(5)
    assert down(x).shape == (2, 5, 4, 3) and up(x).shape == (2, 5, 16, 12)
    assert torch.equal(down.filt[0, 0] * 16, torch.tensor([[1., 2, 1], [2, 4, 2], [1, 2, 1]]))
    assert torch.allclose(up.filt[0, 0].sum(), torch.tensor(4.0))
    # a constant image stays constant through both (the blur sums to 1, the upsampler interpolates)
    c = torch.full((1, 2, 8, 8), 0.5)
    assert torch.allclose(Downsample(2)(c), torch.full((1, 2, 4, 4), 0.5))
    assert torch.allclose(Upsample(2)(c), torch.full((1, 2, 16, 16), 0.5))


def test_antialiased_generator_has_the_reference_keys_and_taps():
    G = define_G(GeneratorConfig(antialias=True, antialias_up=True))
    shapes = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    assert sum(p.numel() for p in G.parameters()) == 11_378_179
    expected = {"model.1.weight": (64, 3, 7, 7), "model.4.weight": (128, 64, 3, 3), "model.7.filt": (128, 1, 3, 3),
                "model.8.weight": (256, 128, 3, 3), "model.11.filt": (256, 1, 3, 3),
                "model.12.conv_block.5.weight": (256, 256, 3, 3), "model.20.conv_block.1.weight": (256, 256, 3, 3),
                "model.21.filt": (256, 1, 4, 4), "model.22.weight": (128, 256, 3, 3),
                "model.25.filt": (128, 1, 4, 4), "model.26.weight": (64, 128, 3, 3), "model.30.weight": (3, 64, 7, 7)}
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    outside_blocks = {k for k in shapes if "conv_block" not in k}
    assert outside_blocks == {f"model.{i}.{leaf}" for i in (1, 4, 8, 22, 26, 30) for leaf in ("weight", "bias")} \
        | {f"model.{i}.filt" for i in (7, 11, 21, 25)}
    assert {int(k.split(".")[1]) for k in shapes if "conv_block" in k} == set(range(12, 21))
    small = define_G(GeneratorConfig(ngf=4, antialias=True, antialias_up=True))
    feats = small.encode(torch.zeros(1, 3, 32, 32), [0, 4, 8, 12, 16])
    assert [tuple(f.shape[1:]) for f in feats] == [(3, 38, 38), (8, 32, 32), (16, 16, 16), (16, 8, 8), (16, 8, 8)]
    D = define_D(DiscriminatorConfig(antialias=True))
    assert sum(p.numel() for p in D.parameters()) == 2_764_737
    assert "model.2.filt" in D.state_dict()
    assert D(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_per_method_defaults():
    cut, fast = default_config("cut"), default_config("fastcut")
    assert (cut.options["lambda_nce"], cut.options["nce_idt"], cut.options["flip_equivariance"]) == (1.0, True, False)
    assert (fast.options["lambda_nce"], fast.options["nce_idt"], fast.options["flip_equivariance"]) == (10.0, False,
                                                                                                      True)
    assert (cut.n_epochs, cut.n_epochs_decay, fast.n_epochs, fast.n_epochs_decay) == (200, 200, 150, 50)
    assert cut.init_type == "xavier" and "pool_size" not in cut.options and cut.gan_mode == "lsgan"
    assert cut.generator.antialias and cut.generator.antialias_up and cut.discriminator.antialias
    assert default_config("cut", shapes=True).generator.antialias      # the shapes preset keeps anti-aliasing
    fast_shapes, cut_shapes = default_config("fastcut", shapes=True), default_config("cut", shapes=True)
    assert fast_shapes.init_type == cut_shapes.init_type == "normal" and cut_shapes.options["nce_all_negatives"]
    assert not fast_shapes.options["flip_equivariance"] and fast_shapes.options["lambda_nce"] == 4.0
    assert cut_shapes.options["lambda_nce"] == 1.0 and cut_shapes.options["nce_idt"]    # CUT keeps its own
    assert fast_shapes.generator == cut_shapes.generator                # the shared shapes networks
    assert cut.options["num_patches"] == 256 and cut.batch_size == 1    # only builtin:shapes changes


def _weights(folder):
    out = {}
    for name in ("G_A", "D_A", "F", "train_state"):
        out.update({f"{name}/{k}": v for k, v in load_file(str(folder / f"{name}.safetensors")).items()})
    return out


@pytest.mark.parametrize("model", ["cut", "fastcut"])
def test_one_sided_resume_is_exact(tmp_path, model):
    """Stop at 3 (mid-epoch 1), resume to 6 (into epoch 2, the decay phase) == a straight run to 6."""
    full = train(tiny(tmp_path / "full", model, max_iters=6))
    train(tiny(tmp_path / "split", model, max_iters=3))
    resumed = train(resolve_config(tiny(tmp_path / "split", model, max_iters=6), True, {"max_iters"}), resume=True)
    a, b = _weights(full.checkpoint), _weights(resumed.checkpoint)
    assert a.keys() == b.keys() and any(k.startswith("F/mlp_4") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "full" / "samples" / "iter_00000003.png").is_file()


def test_periodic_hook_logs_and_saves_a_named_checkpoint(tmp_path):
    calls = []

    def hook(method, iteration):
        calls.append(iteration)
        return {"score": float(iteration), "checkpoint": "best"} if iteration == 2 else {"score": 0.0}

    train(tiny(tmp_path / "run", max_iters=4), hooks=[PeriodicHook("eval", 2, hook)])
    assert calls == [2, 4]
    assert (tmp_path / "run" / "checkpoints" / "best" / "G_A.safetensors").is_file()
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert '"hook": "eval"' in log and '"score": 2.0' in log


def i2i(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "i2i", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_cli_fastcut_run_translate_and_resume(tmp_path):
    run = tmp_path / "run"
    done = i2i("cyclegan", "train", "--model", "fastcut", "--run-dir", run, "--max-iters", 2, "--ngf", 4, "--ndf", 4,
               "--shapes-count", 4, "--batch-size", 2, "--num-patches", 8, "--netf-nc", 8, "--quiet")
    assert done.returncode == 0, done.stderr
    assert '"model": "fastcut"' in (run / "config.json").read_text()
    img = tmp_path / "in.png"
    from PIL import Image
    Image.new("RGB", (36, 28), (200, 30, 30)).save(img)
    bad = i2i("cyclegan", "translate", img, "-c", run, "--direction", "BtoA", "-o", tmp_path / "out")
    assert bad.returncode == 2 and "only A -> B" in bad.stderr
    ok = i2i("cyclegan", "translate", img, "-c", run, "-o", tmp_path / "out.png")
    assert ok.returncode == 0, ok.stderr
    assert Image.open(tmp_path / "out.png").size == (36, 28)
    # resume with no DATAROOT takes everything from config.json; another DATAROOT is refused
    more = i2i("cyclegan", "train", "--run-dir", run, "--resume", "--max-iters", 3, "--quiet")
    assert more.returncode == 0, more.stderr
    assert (run / "latest").read_text().strip() == "checkpoints/iter_00000003"
    other = i2i("cyclegan", "train", tmp_path, "--run-dir", run, "--resume", "--max-iters", 4)
    assert other.returncode == 2 and str(tmp_path) in other.stderr and "builtin:shapes" in other.stderr
    wrong = i2i("cyclegan", "train", "--lambda-nce", 2, "--run-dir", tmp_path / "cg", "--max-iters", 1)
    assert wrong.returncode == 2 and "--lambda-nce" in wrong.stderr


@pytest.mark.parametrize("cfg", [GeneratorConfig(antialias=True, antialias_up=True),
                                 GeneratorConfig(arch="resnet_6blocks", ngf=8, antialias=True, antialias_up=True),
                                 GeneratorConfig(arch="resnet_6blocks", ngf=8, antialias=True),
                                 GeneratorConfig(arch="resnet_6blocks", ngf=16, norm="batch", dropout=True),
                                 GeneratorConfig(arch="resnet_3blocks", ngf=8, norm="batch")])
def test_reference_layouts_are_recognised_from_their_keys(tmp_path, cfg):
    """A reference file (CUT's anti-aliased layout or CycleGAN's, saved from DataParallel with ``module.``) is
    recognised from its keys and shapes and loads with the reference forward's output."""
    from i2i.cyclegan.convert import generator_from_reference, guess_generator_config, load_reference_state

    torch.manual_seed(0)
    net = define_G(cfg, init_type="xavier").eval()
    path = tmp_path / "latest_net_G.pth"
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, path)
    guessed = guess_generator_config(load_reference_state(path))
    assert guessed == cfg
    x = torch.rand(1, 3, 36, 44) * 2 - 1
    with torch.no_grad():
        assert torch.equal(generator_from_reference(path, guessed)(x), net(x))


def test_cut_reference_file_translates_and_imports_without_flags(tmp_path):
    from PIL import Image

    from i2i.cyclegan.checkpoint import load_generator
    from i2i.errors import CheckpointError

    net = define_G(GeneratorConfig(arch="resnet_6blocks", ngf=4, antialias=True, antialias_up=True))
    pth = tmp_path / "latest_net_G.pth"
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, pth)
    Image.new("RGB", (30, 22), (20, 200, 30)).save(tmp_path / "in.png")
    done = i2i("cyclegan", "translate", tmp_path / "in.png", "-c", pth, "-o", tmp_path / "out.png")
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "out.png").size == (30, 22)
    imported = i2i("cyclegan", "import", pth, "-o", tmp_path / "g.safetensors")
    assert imported.returncode == 0, imported.stderr
    _, cfg = load_generator(tmp_path / "g.safetensors")
    assert cfg.antialias and cfg.antialias_up and cfg.ngf == 4
    # a file whose fixed filters are not the blur filters is not this architecture
    from i2i.cyclegan.convert import generator_from_reference
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["model.7.filt"] += 0.1
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="filt"):
        generator_from_reference(tmp_path / "odd.pth", cfg)


def test_decay_phase_stops_the_random_resize_crop():
    from types import SimpleNamespace

    from i2i.cyclegan.data import Preprocess
    from i2i.cyclegan.methods.cut import CUT
    from i2i.cyclegan.methods.cyclegan import CycleGAN

    cfg = default_config("cut")                       # 200 + 200 epochs
    pre = Preprocess("resize_and_crop", 286, 256, True)
    me = SimpleNamespace(config=cfg)
    assert CUT.preprocess(me, pre, 200) == pre
    assert CUT.preprocess(me, pre, 201) == Preprocess("resize_and_crop", 256, 256, True)
    assert CycleGAN.preprocess(me, pre, 201) == pre  # CycleGAN keeps it


@pytest.mark.parametrize("model", ["cut", "fastcut"])
def test_a_b_channel_mismatch_is_a_usage_error(tmp_path, model):
    from PIL import Image
    from typer.testing import CliRunner

    from i2i.cli.app import app

    for domain in ("trainA", "trainB"):
        (tmp_path / domain).mkdir()
        Image.new("RGB", (32, 32), "red").save(tmp_path / domain / "x.png")
    res = CliRunner().invoke(app, ["cyclegan", "train", str(tmp_path), "--model", model, "--input-nc", "3",
                                   "--output-nc", "1", "--run-dir", str(tmp_path / "run"), "--max-iters", "1"])
    assert res.exit_code == 2 and "needs as many channels in A as in B" in res.stderr, res.output


def test_a_short_last_batch_is_left_out_as_the_reference_does(tmp_path):
    """The CUT reference's training DataLoader has drop_last=True (data/__init__.py): 5 images at batch 2 make 2
    iterations an epoch, not 3; fewer images than a batch is a usage error, not an endless run of empty epochs."""
    from i2i.errors import UsageError

    result = train(tiny(tmp_path / "run", "cut", shapes_count=5, log_every=100, sample_every=100, save_every=100))
    assert (result.iterations, result.epochs_done) == (4, 2)
    with pytest.raises(UsageError, match="leaves out a last batch shorter than --batch-size 2"):
        train(tiny(tmp_path / "one", "fastcut", shapes_count=1))


def test_a_run_that_kept_the_short_last_batch_says_why_it_cannot_resume(tmp_path):
    """A CUT run started before the short last batch was left out has one iteration more an epoch on record; its
    resume is refused with the reason, not only 'the dataset or batch size changed'."""
    import json

    from i2i.cyclegan.checkpoint import latest_checkpoint
    from i2i.errors import CheckpointError

    cfg = tiny(tmp_path / "run", "cut", shapes_count=5, n_epochs=2, log_every=100, sample_every=100, save_every=1,
               max_iters=1)
    train(cfg)
    state = latest_checkpoint(tmp_path / "run") / "train_state.json"
    meta = json.loads(state.read_text())
    meta["position"]["iters_per_epoch"] = 3              # as ceil(5 / 2) was recorded then
    state.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="short last batch"):
        train(merge_config(cfg, {"max_iters": None}), resume=True)


def test_a_decay_phase_the_images_cannot_train_in_is_refused_before_training(tmp_path):
    """CUT's decay phase sets the load size to the crop size; under scale_width that can make every image too
    small for the networks. It is a usage error before the first step, not a failure when the phase starts."""
    from PIL import Image

    from i2i.errors import UsageError

    for d in ("trainA", "trainB"):
        (tmp_path / "data" / d).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (64, 40), (40 * i, 90, 200)).save(tmp_path / "data" / d / f"{i}.png")
    cfg = merge_config(tiny(tmp_path / "run", "cut"), {"dataroot": str(tmp_path / "data"), "preprocess": "scale_width",
                                                       "load_size": 64, "crop_size": 8, "batch_size": 1})
    with pytest.raises(UsageError, match=r"from epoch 2 on, --model cut trains with load size 8 .*0\.png: 64x40 is "
                                         r"too small.*or a larger --crop-size"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
    train(merge_config(cfg, {"crop_size": 32, "max_iters": 1}))      # a crop the networks take: it trains


def test_a_decay_phase_that_splits_the_image_sizes_is_named_as_such(tmp_path):
    """300x300 and 300x305 images both train at 288x288 at first (scale_width 286, rounded to 4), but at 256x256
    and 256x260 in CUT's decay phase: a batch of 2 cannot hold both, and the message says when."""
    from PIL import Image

    from i2i.errors import UsageError

    for d in ("trainA", "trainB"):
        (tmp_path / "data" / d).mkdir(parents=True)
        for i, h in enumerate((300, 305)):
            Image.new("RGB", (300, h), (90, 40 * i, 200)).save(tmp_path / "data" / d / f"{i}.png")
    cfg = merge_config(tiny(tmp_path / "run", "cut"), {"dataroot": str(tmp_path / "data"), "preprocess": "scale_width",
                                                       "load_size": 286, "crop_size": 256, "batch_size": 2})
    with pytest.raises(UsageError, match=r"from epoch 2 on, .*these differ \(256x256 and 256x260\)"):
        train(cfg)
