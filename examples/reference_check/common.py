"""Helpers shared by cyclegan_step.py and cut_step.py: importing the reference implementation from a checkout,
the training batches, and the comparison of losses and parameters.

Nothing of the reference is copied here: its modules are imported from ``--reference`` at run time.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch

from i2i.cyclegan.data import Preprocess, UnalignedDataset, epoch_plan, list_images


def fail(message: str) -> None:
    """One-line error, exit status 2 (as argparse uses for bad arguments)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def use_reference(path: str, required: tuple[str, ...], what: str) -> Path:
    """Make the checkout at ``path`` importable (its top-level ``models``, ``util``, ``options``, ``data``).

    Exits with status 2 and one line naming the missing files when ``path`` does not hold ``required``."""
    root = Path(path)
    missing = [name for name in required if not (root / name).is_file()]
    if missing:
        fail(f"--reference {path} is not a checkout of {what}: missing {', '.join(missing)}")
    stub_torchvision()
    sys.path.insert(0, str(root.resolve()))
    return root


def stub_torchvision() -> None:
    """Register an empty ``torchvision`` (with ``torchvision.transforms``) when it is not installed.

    The reference imports it at module level in ``util/util.py`` and ``data/base_dataset.py`` (reached through
    ``options``), but nothing the model code runs here uses it; i2i itself does not need torchvision."""
    if importlib.util.find_spec("torchvision") is not None:
        return
    tv = types.ModuleType("torchvision")
    tv.transforms = types.ModuleType("torchvision.transforms")
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tv.transforms


def batches(data: str, iters: int, crop: int, seed: int, dtype: torch.dtype = torch.float32):
    """``iters`` (real_A, real_B) pairs of shape [1, 3, crop, crop] from i2i's own unaligned dataset: the
    reference's resize_and_crop (load size crop * 286 / 256, random crop, flip), the epoch-1 plan of ``seed``."""
    root = Path(data)
    if not ((root / "trainA").is_dir() and (root / "trainB").is_dir()):
        fail(f"--data {data} has no trainA/ and trainB/ folders")
    pre = Preprocess("resize_and_crop", round(crop * 286 / 256), crop, True)
    ds = UnalignedDataset(list_images(root / "trainA"), list_images(root / "trainB"), pre)
    plan = epoch_plan(*ds.sizes, 1, seed)
    out = []
    for i in range(iters):
        item = ds[plan[i % len(plan)]]
        out.append((item["A"][None].to(dtype), item["B"][None].to(dtype)))
    return out


def rel_diff(mine: float, ref: float) -> float:
    return abs(mine - ref) / max(abs(ref), 1e-12)


def instance_norm_biases(net: torch.nn.Module) -> set[str]:
    """Conv biases directly followed by an affine-free InstanceNorm2d: their gradient is zero up to float noise,
    so Adam moves them by about sign(noise) * lr, and they change no output. Reported apart from the others."""
    names = set()
    mods = list(net.named_modules())
    for (n1, m1), (_, m2) in zip(mods, mods[1:]):
        if isinstance(m1, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m1.bias is not None \
                and isinstance(m2, torch.nn.InstanceNorm2d) and not m2.affine:
            names.add(f"{n1}.bias")
    return names


def net_diff(mine: torch.nn.Module, ref: torch.nn.Module) -> dict:
    """Parameter differences of two nets with the same keys: max |diff| and the relative L2 norm of the
    difference, both without the biases of ``instance_norm_biases`` (max |diff| of those given apart), and
    max |diff| of floating-point buffers (batch-norm running statistics)."""
    ref_params = dict(ref.named_parameters())
    skip = instance_norm_biases(ref)
    worst, where, in_bias, sq_diff, sq_ref = 0.0, "", 0.0, 0.0, 0.0
    for name, p in mine.named_parameters():
        d = (p.detach() - ref_params[name].detach()).double()
        m = d.abs().max().item()
        if name in skip:
            in_bias = max(in_bias, m)
            continue
        if m > worst:
            worst, where = m, name
        sq_diff += d.pow(2).sum().item()
        sq_ref += ref_params[name].detach().double().pow(2).sum().item()
    ref_bufs = dict(ref.named_buffers())
    bufs = [(b.double() - ref_bufs[k].double()).abs().max().item() for k, b in mine.named_buffers()
            if b.is_floating_point() and b.numel()]
    return dict(max_abs=worst, where=where, rel_l2=(sq_diff / max(sq_ref, 1e-30)) ** 0.5, in_biases_max_abs=in_bias,
                buffers_max_abs=max(bufs, default=0.0))


def output_diff(mine: torch.nn.Module, ref: torch.nn.Module, x: torch.Tensor) -> float:
    """max |mine(x) - ref(x)|, on copies (a batch-norm net in train mode would update its running stats)."""
    with torch.no_grad():
        return (copy.deepcopy(mine)(x) - copy.deepcopy(ref)(x)).abs().max().item()


def loss_row(it: int, mine: dict, ref: dict) -> dict:
    return {"iter": it, **{k: dict(mine=mine[k], ref=ref[k], rel=rel_diff(mine[k], ref[k])) for k in ref}}


def summary(rows: list[dict], params: dict) -> dict:
    """Max relative loss difference per loss over all iterations, and the parameter checks."""
    losses = [k for k in rows[0] if k != "iter"]
    return {"max_rel_loss": {k: max(r[k]["rel"] for r in rows) for k in losses}, "params": params}


def print_tables(title: str, rows: list[dict], params: dict) -> None:
    """Relative loss differences at the checked iterations (and their max over all), then the nets."""
    losses = [k for k in rows[0] if k != "iter"]
    print(f"\n{title}: |mine - ref| / |ref| per loss")
    print(f"{'iter':>5} " + " ".join(f"{k:>9}" for k in losses))
    for it in sorted(params):
        print(f"{it:5d} " + " ".join(f"{rows[it - 1][k]['rel']:9.1e}" for k in losses))
    print(f"{'max':>5} " + " ".join(f"{max(r[k]['rel'] for r in rows):9.1e}" for k in losses))
    print(f"{title}: parameters (max abs and rel L2 without conv biases before InstanceNorm; those apart)")
    print(f"{'iter':>5} {'net':>5} {'max abs':>9} {'rel L2':>9} {'IN bias':>9} {'buffers':>9} {'output':>9}")
    for it in sorted(params):
        for net, v in params[it].items():
            out = f"{v['output_max_abs']:9.1e}" if "output_max_abs" in v else f"{'-':>9}"
            print(f"{it:5d} {net:>5} {v['max_abs']:9.1e} {v['rel_l2']:9.1e} {v['in_biases_max_abs']:9.1e} "
                  f"{v['buffers_max_abs']:9.1e} {out}")


def checkpoints(iters: int) -> set[int]:
    return {i for i in (1, 5, 10, 30, iters) if i <= iters}


def finish(result: dict, out: str | None) -> None:
    """Write the full result (per-iteration rows included) to ``out`` and print the summary as one JSON line."""
    if out:
        Path(out).write_text(json.dumps(result, indent=1))
    short = {k: v for k, v in result.items() if k not in ("rows", "baseline_rows")}
    print(json.dumps(short))


def add_common_args(ap, reference_help: str, iters: int) -> None:
    """The flags both scripts take."""
    ap.add_argument("--reference", required=True, help=reference_help)
    ap.add_argument("--data", required=True, help="dataset folder with trainA/ and trainB/ (e.g. horse2zebra)")
    ap.add_argument("--iters", type=int, default=iters)


def add_run_args(ap) -> None:
    ap.add_argument("--crop", type=int, default=64, help="crop size (load size crop * 286 / 256)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write the full result (every iteration) to this JSON file")


def add_baseline(result: dict, key: str, title: str, rows: list[dict], params: dict) -> dict:
    """Print the float-rounding yardstick's tables and add it to ``result`` under ``key``."""
    print_tables(title, rows, params)
    result[key] = summary(rows, params)
    result["baseline_rows"] = rows
    return result


def parse_and_run(ap, run) -> None:
    """Parse the command line, set the thread count, run the comparison and write its result."""
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    finish(run(args), args.out)
