"""Benchmark: one CycleGAN training iteration with the reference defaults, i2i's trainer vs the reference layout.

Both sides do identical math on the same nets (resnet_9blocks G, basic PatchGAN D, instance norm, lsgan, pool 50,
identity 0.5, batch 1, Adam 2e-4/(0.5, 0.999)) on random 3 x S x S inputs:

- ``reference layout``: the reference implementation's step structure re-created here (six separate generator
  calls, separate D calls, plain per-parameter Adam, contiguous tensors) as a same-machine baseline;
- ``i2i``: the project's own step (``i2i.cyclegan.trainer``: batched generator/discriminator calls, fused Adam,
  no per-step host syncs), fp32 and bf16 autocast, each with contiguous and channels_last tensors.

The table also gives each row's rate in GFLOP/s (the step's convolution and matrix-product FLOPs, counted once, over
its time) and the compute bound: the step's FLOPs at the machine's fp32 matrix-multiply peak (``roofline.py``).
``--compile`` adds rows with the four nets compiled by ``torch.compile`` (the compile time is printed, not timed).

Prints a table and one JSON line (machine, versions, settings, medians). Usage:

    python examples/benchmarks/cyclegan_train_step.py --size 128 --iters 10 --warmup 3
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import platform
import statistics
import time

import torch

from i2i.cyclegan.config import DiscriminatorConfig, GeneratorConfig, TrainConfig
from i2i.cyclegan.losses import discriminator_loss, gan_loss
from i2i.cyclegan.networks import define_D, define_G
from i2i.cyclegan.pool import ImagePool
from i2i.cyclegan.methods.base import make_adam
from i2i.cyclegan.methods.cyclegan import DiscriminatorPair, GeneratorPair
from i2i.device import autocast
from roofline import count_gflop, fp32_matmul_peak


def reference_layout_step(nets, opts, pools, real_A, real_B):
    G_A, G_B, D_A, D_B = nets
    opt_G, opt_D = opts
    fake_B = G_A(real_A)
    rec_A = G_B(fake_B)
    fake_A = G_B(real_B)
    rec_B = G_A(fake_A)
    for d in (D_A, D_B):
        d.requires_grad_(False)
    opt_G.zero_grad()
    idt_A = G_A(real_B)
    idt_B = G_B(real_A)
    loss_G = (gan_loss(D_A(fake_B), True, "lsgan") + gan_loss(D_B(fake_A), True, "lsgan")
              + (rec_A - real_A).abs().mean() * 10 + (rec_B - real_B).abs().mean() * 10
              + (idt_A - real_B).abs().mean() * 5 + (idt_B - real_A).abs().mean() * 5)
    loss_G.backward()
    opt_G.step()
    for d in (D_A, D_B):
        d.requires_grad_(True)
    opt_D.zero_grad()
    fb = pools[1].query(fake_B.detach())
    discriminator_loss(D_A(real_B), D_A(fb), "lsgan").backward()
    fa = pools[0].query(fake_A.detach())
    discriminator_loss(D_B(real_A), D_B(fa), "lsgan").backward()
    opt_D.step()


def i2i_step(gens, discs, nets, opts, pools, real_A, real_B, precision, device, memory_format):
    G_A, G_B, D_A, D_B = nets
    opt_G, opt_D = opts
    discs.requires_grad_(False)
    with autocast(device, precision):
        out = gens(real_A, real_B)
        pred_B, pred_A = D_A(out["fake_B"]), D_B(out["fake_A"])
    loss_G = (gan_loss(pred_B, True, "lsgan") + gan_loss(pred_A, True, "lsgan")
              + (out["rec_A"].float() - real_A).abs().mean() * 10 + (out["rec_B"].float() - real_B).abs().mean() * 10
              + (out["idt_A"].float() - real_B).abs().mean() * 5 + (out["idt_B"].float() - real_A).abs().mean() * 5)
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()
    discs.requires_grad_(True)
    fb = pools[1].query(out["fake_B"].detach()).contiguous(memory_format=memory_format)
    fa = pools[0].query(out["fake_A"].detach()).contiguous(memory_format=memory_format)
    with autocast(device, precision):
        d = discs(real_A, real_B, fa, fb)
    loss_D = discriminator_loss(d["D_A_real"], d["D_A_fake"], "lsgan") + \
        discriminator_loss(d["D_B_real"], d["D_B_fake"], "lsgan")
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    opt_D.step()


def build(channels_last: bool, fused: bool):
    torch.manual_seed(0)
    g, d = GeneratorConfig(), DiscriminatorConfig()
    nets = [define_G(g), define_G(g), define_D(d), define_D(d)]
    if channels_last:
        nets = [n.to(memory_format=torch.channels_last) for n in nets]
    cfg = TrainConfig()
    g_params = itertools.chain(nets[0].parameters(), nets[1].parameters())
    d_params = itertools.chain(nets[2].parameters(), nets[3].parameters())
    if fused:
        opts = [make_adam(g_params, cfg, torch.device("cpu")), make_adam(d_params, cfg, torch.device("cpu"))]
    else:
        opts = [torch.optim.Adam(g_params, lr=2e-4, betas=(0.5, 0.999), foreach=False),
                torch.optim.Adam(d_params, lr=2e-4, betas=(0.5, 0.999), foreach=False)]
    return nets, opts, [ImagePool(50, 1), ImagePool(50, 2)]


def time_it(step, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--compile", action="store_true", help="add fp32 rows with torch.compile'd nets")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    real_A = torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1
    real_B = torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1
    results = {}

    nets, opts, pools = build(channels_last=False, fused=False)
    gflop = count_gflop(lambda: reference_layout_step(nets, opts, pools, real_A, real_B))
    results["reference layout fp32"] = time_it(lambda: reference_layout_step(nets, opts, pools, real_A, real_B),
                                               args.iters, args.warmup)
    variants = list(itertools.product(("fp32", "bf16"), (False, True), (False,)))
    if args.compile:
        variants += [("fp32", False, True), ("fp32", True, True)]
    for precision, channels_last, compiled in variants:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        nets, opts, pools = build(channels_last=channels_last, fused=True)
        if compiled:
            for net in nets:
                net.compile()
        gens = GeneratorPair(nets[0], nets[1], identity=True, fuse=True)
        discs = DiscriminatorPair(nets[2], nets[3], fuse=True)
        a, b = real_A.contiguous(memory_format=fmt), real_B.contiguous(memory_format=fmt)
        name = f"i2i {precision}" + (", channels_last" if channels_last else "") + (", compiled" if compiled else "")
        step = functools.partial(i2i_step, gens, discs, nets, opts, pools, a, b, precision, dev, fmt)
        if compiled:
            t0 = time.perf_counter()
            step()
            step()
            print(f"{name}: first two steps (compile) {time.perf_counter() - t0:.0f} s")
        results[name] = time_it(step, args.iters, args.warmup)

    peak = fp32_matmul_peak()
    base = statistics.median(results["reference layout fp32"])
    print(f"| step ({args.size} px, batch 1, {args.threads} threads) | median s/iter | vs reference layout "
          f"| GFLOP/s |")
    print("|---|---|---|---|")
    for name, times in results.items():
        med = statistics.median(times)
        print(f"| {name} | {med:.3f} | {med / base:.2f}x | {gflop / med:.0f} |")
    print(f"| bound: {gflop:.0f} GFLOP at the fp32 matmul peak of {peak:.0f} GFLOP/s | {gflop / peak:.3f} "
          f"| {gflop / peak / base:.2f}x | {peak:.0f} |")
    print(json.dumps({"benchmark": "cyclegan_train_step", "machine": platform.processor() or platform.machine(),
                      "threads": args.threads, "torch": torch.__version__, "size": args.size,
                      "iters": args.iters, "warmup": args.warmup, "gflop_per_step": round(gflop, 1),
                      "fp32_matmul_peak_gflops": round(peak), "compile": args.compile,
                      "median_s": {k: statistics.median(v) for k, v in results.items()}}))


if __name__ == "__main__":
    main()
