"""Reference check: i2i's CUT / FastCUT training step against the CUT reference's ``CUTModel.optimize_parameters``.

The reference is imported at run time from ``--reference``, a checkout of taesungp/contrastive-unpaired-translation
(``models/cut_model.py``, ``models/networks.py``, ``models/patchnce.py``, ``options/train_options.py``).

How:

- i2i's method is built from ``default_config(model)`` (the reference defaults), i.e. G, D and F initialised by i2i
  from ``--seed``;
- the reference ``CUTModel`` gets its own parsed training options (``--CUT_mode CUT|FastCUT``, CPU), runs
  ``data_dependent_initialize`` on the first batch (where it creates F), then i2i's G, D and F weights are loaded into
  it (the keys must map 1:1, the anti-aliasing filters must be equal), then ``setup`` and ``parallelize``, as its
  train.py does; the i2i and reference options that matter are checked to be equal;
- every iteration both get the same real_A / real_B crops (i2i's dataset on ``--data``); i2i steps first, its
  patch locations and FastCUT flip are recorded and replayed into the reference (its F's ``patch_ids`` and the
  ``np.random.random()`` of cut_model.py);
- ``--dtype float64`` runs both sides in double precision (nets, optimizer states, inputs). i2i casts the PatchNCE
  and GAN-loss inputs with ``Tensor.float()`` (for bf16 autocast); in this script only, ``Tensor.float()`` is the
  identity on float64 tensors so those casts keep double precision. Then float noise can no longer flip the sign of
  Adam's first, sign-like, update on gradients that are ~0, and a real difference would stand out;
- ``--baseline`` also trains a second i2i method with the same start and the same random draws whose D scores real
  and fake in two calls instead of one (i2i's batch-norm path): the same math in another float order, the yardstick
  for how fast two equivalent implementations drift apart on their own.

Per iteration every loss is compared (relative difference); at iterations 1, 5, 10, 30 and the last, every
parameter of G, D and F (max abs difference and relative L2 norm of the difference, the conv biases that feed an
InstanceNorm apart: their gradient is float noise) and G's output on the first batch. Prints tables and one JSON
line.

The numbers in docs/cut.md came from (about 15 and 7 minutes, one thread on a busy two-core machine):

    python examples/reference_check/cut_step.py --reference ../contrastive-unpaired-translation \\
        --data ../shared/data/horse2zebra-mini --model cut --dtype float64 --iters 30 --baseline
    python examples/reference_check/cut_step.py --reference ../contrastive-unpaired-translation \\
        --data ../shared/data/horse2zebra-mini --model fastcut --dtype float64 --iters 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import torch

from common import (add_baseline, add_common_args, add_run_args, batches, checkpoints, loss_row, net_diff, output_diff,
                    parse_and_run, print_tables, summary, use_reference)
from i2i.cyclegan.context import StepContext
from i2i.cyclegan.methods import get_method
from i2i.cyclegan.run_config import default_config

REQUIRED = ("models/cut_model.py", "models/networks.py", "models/patchnce.py", "options/train_options.py")
NETS = ("G", "D", "F")
SAME_OPTIONS = (("lambda_nce", "lambda_NCE"), ("lambda_gan", "lambda_GAN"), ("nce_idt", "nce_idt"),
                ("flip_equivariance", "flip_equivariance"), ("num_patches", "num_patches"), ("nce_t", "nce_T"),
                ("netf_nc", "netF_nc"), ("nce_layers", "nce_layers"),
                ("nce_all_negatives", "nce_includes_all_negatives_from_minibatch"))
SAME_CONFIG = ("lr", "beta1", "beta2", "n_epochs", "n_epochs_decay", "init_type", "init_gain", "gan_mode", "batch_size",
               "load_size", "crop_size", "lr_policy")


def ref_options(mode: str, data: str, checkpoints_dir: str):
    """The reference's parsed training options, as its train.py gets them (``TrainOptions.gather_options``, without
    printing or saving them), on the CPU."""
    from options.train_options import TrainOptions

    argv = ["train.py", "--dataroot", data, "--gpu_ids", "-1", "--CUT_mode", mode, "--name", "reference_check",
            "--checkpoints_dir", checkpoints_dir]
    # CUTModel.modify_commandline_options re-parses sys.argv to pick the CUT / FastCUT defaults: set it as train.py
    # would see it
    saved, sys.argv = sys.argv, argv
    try:
        opt = TrainOptions().gather_options()
    finally:
        sys.argv = saved
    opt.isTrain, opt.gpu_ids = True, []
    return opt


def check_same_settings(m, cfg, opt) -> None:
    for mine, theirs in SAME_OPTIONS:
        assert getattr(m.opt, mine) == getattr(opt, theirs), (mine, getattr(m.opt, mine), getattr(opt, theirs))
    for k in SAME_CONFIG:
        assert getattr(cfg, k) == getattr(opt, k), (k, getattr(cfg, k), getattr(opt, k))
    assert opt.pool_size == 0 and opt.netF == "mlp_sample" and not opt.no_antialias and not opt.no_antialias_up


def build_i2i(model: str, seed: int, dtype: torch.dtype, fuse_d: bool = True):
    cfg = default_config(model)
    torch.manual_seed(seed)
    ctx = StepContext.for_run(torch.device("cpu"), "fp32", "contiguous")
    m = get_method(model)(cfg, ctx)
    for net in (m.G, m.D, m.F):
        net.to(dtype)              # in place: the optimizers keep the same parameters
    m.fuse_d = m.fuse_d and fuse_d
    return cfg, ctx, m


class Recorder:
    """Records i2i's FastCUT flips and patch ids, and replays them into the reference."""

    def __init__(self, m, ref, cut_model_module):
        self.flips, self.ids, self.flip_queue, self.ids_queue = [], [], [], []
        gen_forward, f_forward, ref_f_forward = m.gen.forward, m.F.forward, ref.netF.forward

        def gen(real_A, real_B, flipped):
            self.flips.append(bool(flipped))
            return gen_forward(real_A, real_B, flipped)

        def f(feats, num_patches, patch_ids=None):
            out, ids = f_forward(feats, num_patches, patch_ids)
            if patch_ids is None:
                self.ids.append([i.clone() for i in ids])
            return out, ids

        def ref_f(feats, num_patches=64, patch_ids=None):
            if patch_ids is None and self.ids_queue:
                patch_ids = [i.numpy() for i in self.ids_queue.pop(0)]
            return ref_f_forward(feats, num_patches, patch_ids)

        m.gen.forward, m.F.forward, ref.netF.forward = gen, f, ref_f
        queue = self.flip_queue

        class Random:   # cut_model.py's np.random.random() (the FastCUT flip) returns i2i's decision
            @staticmethod
            def random():
                return (0.0 if queue.pop(0) else 0.99) if queue else np.random.random()

        cut_model_module.np = SimpleNamespace(random=Random)

    def replay(self, n_flips: int, n_ids: int, flip: bool) -> None:
        self.flip_queue[:] = self.flips[n_flips:] if flip else []
        self.ids_queue[:] = self.ids[n_ids:]


def load_i2i_weights(ref, m) -> dict:
    sizes = {}
    for n in NETS:
        theirs, mine = getattr(ref, "net" + n).state_dict(), getattr(m, n).state_dict()
        assert set(theirs) == set(mine), (n, sorted(set(theirs) ^ set(mine))[:10])
        for k in theirs:
            assert theirs[k].shape == mine[k].shape, (n, k)
            assert not k.endswith("filt") or torch.equal(theirs[k], mine[k]), (n, k, "anti-aliasing filter differs")
        getattr(ref, "net" + n).load_state_dict(mine)
        sizes[n] = len(theirs)
    return sizes


def unwrap(net):
    return net.module if isinstance(net, torch.nn.DataParallel) else net


def compare_nets(m, ref_nets: dict, x) -> dict:
    res = {n: net_diff(getattr(m, n), ref_nets[n]) for n in NETS}
    res["G"]["output_max_abs"] = output_diff(m.G, ref_nets["G"], x)
    return res


def float64_aware_float() -> None:
    """Make ``Tensor.float()`` the identity on float64 tensors (see the module docstring)."""
    plain = torch.Tensor.float

    def as_float(self, *a, **k):
        return self if self.dtype == torch.float64 else plain(self, *a, **k)

    torch.Tensor.float = as_float


def run(args) -> dict:
    use_reference(args.reference, REQUIRED, "the CUT repository (taesungp/contrastive-unpaired-translation)")
    import models.cut_model as cut_model   # the reference, from --reference

    dtype = getattr(torch, args.dtype)
    data = batches(args.data, args.iters, args.crop, 0, dtype)
    cfg, ctx, m = build_i2i(args.model, args.seed, dtype)
    base = build_i2i(args.model, args.seed, dtype, fuse_d=False)[2] if args.baseline else None
    tmp = tempfile.TemporaryDirectory()
    opt = ref_options("CUT" if args.model == "cut" else "FastCUT", args.data, tmp.name)
    check_same_settings(m, cfg, opt)
    torch.manual_seed(1)                   # the reference's own draws (its initial weights are replaced below)
    np.random.seed(1)
    ref = cut_model.CUTModel(opt)
    rec = Recorder(m, ref, cut_model)
    first = {"A": data[0][0].float(), "B": data[0][1].float(), "A_paths": ["a"], "B_paths": ["b"]}
    ref.data_dependent_initialize(first)   # creates F (float32; the pass changes no weight)
    keys = load_i2i_weights(ref, m)
    for net in (ref.netG, ref.netD, ref.netF, ref.criterionGAN):
        net.to(dtype)
    ref.setup(opt)
    ref.parallelize()
    ref_nets = {n: unwrap(getattr(ref, "net" + n)) for n in NETS}
    if dtype == torch.float64:
        float64_aware_float()
    names = m.loss_names
    check = checkpoints(args.iters)
    rows, base_rows, params, base_params = [], [], {}, {}
    t0 = time.time()
    for it, (a, b) in enumerate(data, 1):
        n_flips, n_ids, state = len(rec.flips), len(rec.ids), torch.get_rng_state()
        mine = dict(zip(names, (float(x) for x in m.step(a.clone(), b.clone()))))
        ctx.end_step()
        if base is not None:               # the same patch locations and flips: the same torch random draws
            after = torch.get_rng_state()
            torch.set_rng_state(state)
            base_losses = dict(zip(names, (float(x) for x in base.step(a.clone(), b.clone()))))
            torch.set_rng_state(after)
        rec.replay(n_flips, n_ids, m.opt.flip_equivariance)
        ref.set_input({"A": a.clone(), "B": b.clone(), "A_paths": ["a"], "B_paths": ["b"]})
        ref.optimize_parameters()
        assert not rec.flip_queue and not rec.ids_queue, "the reference did not use every replayed draw"
        theirs = {n: float(getattr(ref, "loss_" + n)) for n in names}
        rows.append(loss_row(it, mine, theirs))
        if base is not None:
            base_rows.append(loss_row(it, base_losses, mine))
        worst = max(v["rel"] for k, v in rows[-1].items() if k != "iter")
        print(f"iter {it:3d} {time.time() - t0:6.1f} s  max rel loss diff {worst:.1e}", flush=True)
        if it in check:
            params[it] = compare_nets(m, ref_nets, data[0][0])
            if base is not None:
                base_params[it] = compare_nets(base, {n: getattr(m, n) for n in NETS}, data[0][0])
    tmp.cleanup()
    title = f"i2i {args.model} vs reference ({args.dtype})"
    print_tables(title, rows, params)
    flips = rec.flips if m.opt.flip_equivariance else None
    result = {"script": "cut_step", **vars(args), "keys": keys, "flips": flips, **summary(rows, params), "rows": rows}
    if base is not None:
        add_baseline(result, "i2i_vs_i2i", "i2i with D in two calls vs i2i", base_rows, base_params)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("cut", "fastcut"), default="cut")
    add_common_args(ap, "checkout of the CUT repository", 30)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    ap.add_argument("--baseline", action="store_true",
                    help="also train i2i with D scoring real and fake in two calls (the float-rounding yardstick)")
    add_run_args(ap)
    parse_and_run(ap, run)


if __name__ == "__main__":
    main()
