"""Reference check: i2i's CycleGAN training step against the reference's ``CycleGANModel.optimize_parameters``.

The reference is imported at run time from ``--reference``, a checkout of junyanz/pytorch-CycleGAN-and-pix2pix or
of taesungp/contrastive-unpaired-translation (whose ``models/cycle_gan_model.py`` derives from the former); it needs
``models/cycle_gan_model.py``, ``models/networks.py``, ``models/base_model.py`` and ``util/image_pool.py`` (the
numbers in the docs were measured with the CUT repository's).

How: i2i's CycleGAN is built as ``i2i cyclegan train`` builds it (the reference defaults: resnet_9blocks G, basic
PatchGAN D, instance norm, lsgan, pool 50, identity 0.5, Adam 2e-4 / (0.5, 0.999), batch 1); the reference model
gets the same options, and i2i's initial G_A, G_B, D_A, D_B are loaded into it (the keys map 1:1). Both get the
same real_A / real_B crops (i2i's dataset on ``--data``). The reference's image pools draw from Python's global
``random``; i2i's two pools are given one ``random.Random`` with the same seed, queried in the same order (B, then
A). The reference runs on the CPU in float32, one thread.

Modes:

- ``synced``: before every step i2i's nets, Adam states and pool contents are copied from the reference, so each
  iteration measures the error of ONE step from an identical state (nothing compounds);
- ``free``: both train on their own from the same start. ``--baseline`` also trains a second copy of the
  reference whose Adam is torch's fused kernel (the one i2i uses), as the yardstick for how fast two equivalent
  implementations drift apart through float rounding alone.

Per iteration every loss is compared (relative difference); at iterations 1, 5, 10, 30 and the last, every
parameter (max abs difference and relative L2 norm of the difference, the conv biases that feed an InstanceNorm
apart: their gradient is float noise) and G's output on the first batch. Prints tables and one JSON line.

The numbers in docs/cyclegan.md came from (about 13 and 4 minutes, one thread on a busy two-core machine):

    python examples/reference_check/cyclegan_step.py --reference ../contrastive-unpaired-translation \\
        --data ../shared/data/horse2zebra-mini --iters 60 --mode synced
    python examples/reference_check/cyclegan_step.py --reference ../contrastive-unpaired-translation \\
        --data ../shared/data/horse2zebra-mini --iters 30 --mode free --baseline
"""

from __future__ import annotations

import argparse
import copy
import itertools
import random
import tempfile
import time
from argparse import Namespace

import torch

from common import (add_baseline, add_common_args, add_run_args, batches, checkpoints, loss_row, net_diff, output_diff,
                    parse_and_run, print_tables, summary, use_reference)
from i2i.cyclegan.context import StepContext
from i2i.cyclegan.methods.cyclegan import CycleGAN
from i2i.cyclegan.run_config import run_config

REQUIRED = ("models/cycle_gan_model.py", "models/networks.py", "models/base_model.py", "util/image_pool.py")
NETS = ("G_A", "G_B", "D_A", "D_B")
I2I_LOSSES = ("D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B")   # CycleGAN.loss_names, in order
POOL_SEED = 1234


def ref_options(norm: str, checkpoints_dir: str) -> Namespace:
    """The reference's default training options for ``--model cycle_gan`` on the CPU. ``norm`` is the CycleGAN
    repository's name, ``normG`` / ``normD`` and the anti-aliasing switches the CUT repository's."""
    return Namespace(
        gpu_ids=[], isTrain=True, checkpoints_dir=checkpoints_dir, name="reference_check", preprocess="resize_and_crop",
        input_nc=3, output_nc=3, ngf=64, ndf=64, netG="resnet_9blocks", netD="basic", n_layers_D=3, norm=norm,
        normG=norm, normD=norm, no_dropout=True, init_type="normal", init_gain=0.02, no_antialias=True,
        no_antialias_up=True, lambda_A=10.0, lambda_B=10.0, lambda_identity=0.5, pool_size=50, gan_mode="lsgan",
        lr=2e-4, beta1=0.5, direction="AtoB", amp=False, lr_policy="linear", epoch_count=1, n_epochs=100,
        n_epochs_decay=100, continue_train=False, verbose=False)


def build_i2i(data: str, seed: int, norm: str, run_dir: str) -> CycleGAN:
    cfg = run_config(data, run_dir=run_dir, model="cyclegan", seed=seed, generator={"norm": norm},
                     discriminator={"norm": norm})
    torch.manual_seed(cfg.seed)        # as the trainer does just before building the method
    return CycleGAN(cfg, StepContext.for_run(torch.device("cpu"), "fp32", cfg.memory_format))


def build_reference(model_cls, opt: Namespace, i2i: CycleGAN, fused_adam: bool = False):
    """The reference model with i2i's initial weights; ``fused_adam``: with torch's fused Adam (the baseline)."""
    ref = model_cls(opt)
    for n in NETS:
        src, dst = getattr(i2i, n).state_dict(), getattr(ref, "net" + n)
        assert list(src) == list(dst.state_dict()), f"{n}: the parameter names differ"
        dst.load_state_dict(src, strict=True)
    if fused_adam:
        for name, nets in (("optimizer_G", ("G_A", "G_B")), ("optimizer_D", ("D_A", "D_B"))):
            params = itertools.chain(*(getattr(ref, "net" + n).parameters() for n in nets))
            setattr(ref, name, torch.optim.Adam(params, lr=opt.lr, betas=(opt.beta1, 0.999), fused=True))
        ref.optimizers = [ref.optimizer_G, ref.optimizer_D]
    return ref


def ref_step(ref, a, b) -> dict:
    ref.set_input({"A": a.clone(), "B": b.clone(), "A_paths": [""], "B_paths": [""]})
    ref.optimize_parameters()
    return {k: float(getattr(ref, "loss_" + k)) for k in I2I_LOSSES}


def count_pool_draws(ref) -> dict:
    """Wrap the reference pools' query to count the queries answered with a stored (older) fake."""
    draws = {"B": 0, "A": 0}
    for key, pool in (("B", ref.fake_B_pool), ("A", ref.fake_A_pool)):
        def query(images, _orig=pool.query, _key=key):
            out = _orig(images)
            draws[_key] += int(not torch.equal(out, images.data))
            return out
        pool.query = query
    return draws


def sync_from_reference(m: CycleGAN, ref, rng: random.Random) -> None:
    """Copy the reference's nets, Adam states, pool contents and pool random state into i2i."""
    for n in NETS:
        getattr(m, n).load_state_dict(getattr(ref, "net" + n).state_dict())
    for mine, theirs in ((m.opt_G, ref.optimizer_G), (m.opt_D, ref.optimizer_D)):
        kernel = {k: mine.param_groups[0].get(k) for k in ("fused", "foreach")}
        mine.load_state_dict(copy.deepcopy(theirs.state_dict()))   # deep: state_dict() hands out live tensors
        for g in mine.param_groups:                                 # keep i2i's own Adam kernel
            g.update(kernel)
    for mine, theirs in ((m.pool_B, ref.fake_B_pool), (m.pool_A, ref.fake_A_pool)):
        mine.images = [im.clone() for im in theirs.images]
    rng.setstate(random.getstate())


def compare_nets(nets: dict, ref, x_a, x_b) -> dict:
    res = {n: net_diff(nets[n], getattr(ref, "net" + n)) for n in NETS}
    for n, x in (("G_A", x_a), ("G_B", x_b), ("D_A", x_b), ("D_B", x_a)):
        res[n]["output_max_abs"] = output_diff(nets[n], getattr(ref, "net" + n), x)
    return res


def run(args) -> dict:
    use_reference(args.reference, REQUIRED, "the CycleGAN or CUT repository")
    from models.cycle_gan_model import CycleGANModel   # the reference, from --reference

    data = batches(args.data, args.iters, args.crop, args.seed)
    tmp = tempfile.TemporaryDirectory()
    m = build_i2i(args.data, args.seed, args.norm, tmp.name + "/run")
    opt = ref_options(args.norm, tmp.name + "/ckpt")
    ref = build_reference(CycleGANModel, opt, m)
    base = build_reference(CycleGANModel, opt, m, fused_adam=True) if args.baseline else None
    random.seed(POOL_SEED)                         # the reference pools draw from the global stream
    rng = random.Random(POOL_SEED)
    m.pool_A.rng = m.pool_B.rng = rng              # one stream, queried B then A like the reference
    base_state = random.Random(POOL_SEED).getstate()
    draws = count_pool_draws(ref)
    check = checkpoints(args.iters)
    rows, base_rows, params, base_params = [], [], {}, {}
    t0 = time.time()
    for it, (a, b) in enumerate(data, 1):
        if args.mode == "synced":
            sync_from_reference(m, ref, rng)
        mine = dict(zip(I2I_LOSSES, m.step(a.clone(), b.clone()).tolist()))
        if base is not None:                       # the baseline's pools get their own copy of the global stream
            state = random.getstate()
            random.setstate(base_state)
            base_losses = ref_step(base, a, b)
            base_state = random.getstate()
            random.setstate(state)
        theirs = ref_step(ref, a, b)
        rows.append(loss_row(it, mine, theirs))
        if base is not None:
            base_rows.append(loss_row(it, base_losses, theirs))
        worst = max(v["rel"] for k, v in rows[-1].items() if k != "iter")
        print(f"iter {it:3d} {time.time() - t0:6.1f} s  max rel loss diff {worst:.1e}  "
              f"pool draws B {draws['B']} A {draws['A']}", flush=True)
        if it in check:
            params[it] = compare_nets({n: getattr(m, n) for n in NETS}, ref, data[0][0], data[0][1])
            if base is not None:
                base_params[it] = compare_nets({n: getattr(base, "net" + n) for n in NETS}, ref, *data[0])
    tmp.cleanup()
    print_tables(f"i2i vs reference ({args.mode})", rows, params)
    result = {"script": "cyclegan_step", **vars(args), "pool_draws": draws, **summary(rows, params), "rows": rows}
    if base is not None:
        add_baseline(result, "ref_vs_ref", "reference with fused Adam vs reference", base_rows, base_params)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, "checkout of the CycleGAN or the CUT repository", 60)
    ap.add_argument("--mode", choices=("synced", "free"), default="synced")
    ap.add_argument("--baseline", action="store_true",
                    help="also train a copy of the reference with fused Adam (the float-rounding yardstick)")
    ap.add_argument("--norm", choices=("instance", "batch"), default="instance")
    add_run_args(ap)
    parse_and_run(ap, run)


if __name__ == "__main__":
    main()
