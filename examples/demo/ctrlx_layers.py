"""Ctrl-X's appearance transfer one layer at a time, on protocol cases (docs/demo-protocol.md):

    python examples/demo/ctrlx_layers.py --model runs/demo-v3/model --split tuning --figure out/layers.png

For each variant (no appearance layer, each appearance layer alone, all of them: what Ctrl-X does) it runs the
first ``--structure`` structure cases and ``--appearance`` appearance cases of the split with the model folder's
Ctrl-X settings and prints, per variant, the mean structure IoU and how often the output took the prompt's colour
(structure cases), or the appearance image's colour and the mean IoU (appearance cases). Per layer it also prints
what the transfer did there, averaged over the scheduled steps of every case: the entropy of the correspondence A
(and the maximum, log of the number of appearance tokens), std(out) / std(in) of the features it rewrote (above 1:
the transfer amplified them) and its reach: how far from its own position a token attends, as a fraction of the
image side (uniform attention: about 0.52; a local, positional correspondence: much less). On the appearance cases
it also prints where the attention goes: the share of A that tokens inside the sketch's shape ("object") and
outside it ("ground") put on the appearance image's object, next to that object's share of the tokens (what
uniform attention would give). A semantic correspondence sends the object's tokens to the object and the ground's
to the ground. The figure has one row per case: sketch, appearance image, then one output per variant.

``--oracle FROM:TO`` replaces, on those transfer steps of the appearance cases, the model's correspondence by the
region-true one (each token inside the sketch's shape attends uniformly to the appearance object's tokens, each
other token to the rest): what the transfer gives when the correspondence is right (the attention columns still
describe the model's own A).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch
import typer
from PIL import Image

import i2i.ctrlx.control as control
from i2i.cli.common import quiet_libraries
from i2i.demo.protocol import SPLITS, cases, score
from i2i.errors import I2IError, UsageError
from i2i.shapes import render_mask

if TYPE_CHECKING:
    import numpy as np


@contextlib.contextmanager
def recording(stats: list[tuple], masks: dict | None = None) -> Iterator[None]:
    """Record (tokens, entropy of A, log tokens, std ratio, reach) of every appearance transfer made inside; when
    ``masks`` holds the current case's "output" and "appearance" object masks (bool ``[S, S]``), append
    :func:`object_attention` of A to each record."""
    original = control.adain_transfer

    def recorded(hidden, appearance, query, key, scale):
        out = original(hidden, appearance, query, key, scale)
        if masks and "oracle" in masks:
            step = masks["calls"] // masks["layers"]
            masks["calls"] += 1
            if masks["oracle"][0] <= step < masks["oracle"][1]:
                out = oracle_transfer(hidden, appearance, masks["output"], masks["appearance"])
        a = torch.softmax(query @ key.transpose(-1, -2) * scale, dim=-1)
        entropy = -(a * a.clamp_min(1e-12).log()).sum(-1).mean().item()
        ratio = (out.std(0).mean() / hidden.std(0).mean()).item()
        where = object_attention(a, masks["output"], masks["appearance"]) if masks else ()
        stats.append((key.shape[1], entropy, math.log(key.shape[1]), ratio, reach(a), *where))
        return out

    control.adain_transfer = recorded
    try:
        yield
    finally:
        control.adain_transfer = original


def oracle_transfer(hidden: torch.Tensor, appearance: torch.Tensor, output: "np.ndarray",
                    target: "np.ndarray") -> torch.Tensor:
    """Ctrl-X's transfer with the region-true correspondence instead of the model's: each output token inside
    ``output``'s object attends uniformly to the appearance tokens inside ``target``'s object, each other token to
    the other appearance tokens (S * normalise(hidden) + M with M, S from that A)."""
    inside, on = token_mask(output, math.isqrt(hidden.shape[0])), token_mask(target, math.isqrt(appearance.shape[0]))
    same = (inside[:, None] == on[None, :]).float()
    a = same / same.sum(-1, keepdim=True).clamp(min=1)
    mean = a @ appearance
    std = (a @ (appearance * appearance) - mean * mean).relu().sqrt()
    return std * control.normalize_tokens(hidden[None])[0] + mean


def reach(a: torch.Tensor) -> float:
    """How far from its own position a query attends, on average under ``a`` ``[H, N, N]`` (square token grids),
    as a fraction of the image side; uniform attention over a grid gives about 0.52."""
    side = math.isqrt(a.shape[-1])
    yx = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(-1, 2)
    distance = torch.cdist(yx.float(), yx.float()) / side
    return (a * distance).sum(-1).mean().item()


def token_mask(mask: "np.ndarray", side: int) -> torch.Tensor:
    """A pixel mask ``[S, S]`` on a ``side`` x ``side`` token grid (a token is in when over half its pixels are),
    flattened in the attention's token order."""
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(mask, dtype=torch.float32)[None, None], side)
    return pooled.reshape(-1) > 0.5


def object_attention(a: torch.Tensor, output: "np.ndarray", appearance: "np.ndarray") -> tuple[float, float, float]:
    """(object -> object, ground -> object, chance): the share of ``a`` ``[H, N, M]`` (square grids) that tokens
    inside ``output``'s object and outside it put on ``appearance``'s object, and that object's share of the
    tokens."""
    side = math.isqrt(a.shape[-1])
    inside, target = token_mask(output, math.isqrt(a.shape[-2])), token_mask(appearance, side)
    on_target = a.mean(0)[:, target].sum(-1)
    nan = float("nan")
    return (on_target[inside].mean().item() if inside.any() else nan,
            on_target[~inside].mean().item() if (~inside).any() else nan, target.float().mean().item())


def run(model: str, split: str, n_structure: int, n_appearance: int, figure: Path | None,
        appearance_schedule: float = 0.3, oracle: tuple[int, int] | None = None) -> None:
    from i2i.ctrlx.pipeline import CtrlXPipeline

    torch.set_num_threads(1)
    pipe = CtrlXPipeline.from_pretrained(model, device="cpu")
    full = pipe.layers
    # the schedule is the probe's own: a model folder whose settings turn the transfer off must still be probed
    config = dataclasses.replace(pipe.default_config(), appearance_schedule=appearance_schedule)
    variants = [("none", ())] + [(name.split(".attentions")[0], (name,)) for name in full.appearance_attn]
    variants.append(("all (Ctrl-X)", full.appearance_attn))
    chosen = cases(split, ("structure",))[:n_structure] + cases(split, ("appearance",))[:n_appearance]
    side, tiles = 64, {}
    print(f"{'variant':<16} {'structure IoU':>13} {'prompt colour':>13} {'appearance colour':>17} {'IoU':>5} "
          f"{'entropy / max':>13} {'std out/in':>10} {'reach':>6} {'object / ground -> object (chance)':>34}")
    for label, layers in variants:
        pipe.layers = dataclasses.replace(full, appearance_attn=layers)
        stats: list = []
        masks: dict = {}
        scores = {"structure": [], "appearance": []}
        with recording(stats, masks):
            for case in chosen:
                masks.clear()
                if case.kind == "appearance":
                    masks.update(output=case.target_mask(side), appearance=render_mask(case.appearance, side))
                    if oracle is not None:
                        masks.update(oracle=oracle, calls=0, layers=max(1, len(layers)))
                image = pipe(case.prompt, case.sketch_image(side), case.appearance_image(side), config,
                             seed=case.seed, decode_branches=False).images[0]
                tiles[(case.name, label)] = image
                scores[case.kind].append(score(case, image))
        structure, appearance = scores["structure"], scores["appearance"]
        iou = statistics.fmean(s["iou"] for s in structure) if structure else float("nan")
        prompt = sum(s["colour_ok"] for s in structure) / len(structure) if structure else float("nan")
        look = sum(s["colour_ok"] for s in appearance) / len(appearance) if appearance else float("nan")
        look_iou = statistics.fmean(s["iou"] for s in appearance) if appearance else float("nan")
        where = f"{statistics.fmean(s[1] for s in stats):.2f} / {stats[0][2]:.2f}" if len(layers) == 1 and stats else ""
        one = len(layers) == 1 and stats
        ratio = f"{statistics.fmean(s[3] for s in stats):.2f}" if one else ""
        far = f"{statistics.fmean(s[4] for s in stats):.2f}" if one else ""
        spread = [s[5:] for s in stats if len(s) > 5] if one else []
        obj, ground, chance = (statistics.fmean(v[i] for v in spread) for i in range(3)) if spread else (0, 0, 0)
        goes = f"{obj:.2f} / {ground:.2f} ({chance:.2f})" if spread else ""
        print(f"{label:<16} {iou:>13.2f} {prompt:>13.0%} {look:>17.0%} {look_iou:>5.2f} {where:>13} {ratio:>10} "
              f"{far:>6} {goes:>34}", flush=True)
    if figure is not None:
        draw(chosen, [label for label, _ in variants], tiles, side).save(figure)
        print(f"figure: {figure}")


def draw(chosen, labels: list[str], tiles: dict, side: int) -> Image.Image:
    step = side + 4
    out = Image.new("RGB", ((len(labels) + 2) * step - 4, len(chosen) * step - 4), (225, 225, 225))
    for r, case in enumerate(chosen):
        row = [case.sketch_image(side), case.appearance_image(side)] + [tiles[(case.name, lab)] for lab in labels]
        for c, tile in enumerate(row):
            if tile is not None:
                out.paste(tile.convert("RGB").resize((side, side)), (c * step, r * step))
    return out


def main(model: str = typer.Option(..., help="A model folder (e.g. a demo training run's model/)."),
         split: str = typer.Option("tuning", help=f"Protocol split: {', '.join(SPLITS)}."),
         structure: int = typer.Option(4, help="Structure cases (the split's first ones)."),
         appearance: int = typer.Option(3, help="Appearance cases (the split's first ones)."),
         figure: Path = typer.Option(None, help="Write the outputs as a picture (refuses an existing file)."),
         appearance_schedule: float = typer.Option(0.3, help="Share of the steps with appearance transfer (the "
                                                   "setting of versions 1-2; the model folder's is not used)."),
         oracle: str = typer.Option(None, help="FROM:TO (e.g. 0:4; 0:99 for all): on these transfer steps of the "
                                    "appearance cases (0: the first), use the region-true correspondence (object "
                                    "to object, ground to ground, uniform within each) instead of the model's.")
         ) -> None:
    quiet_libraries()             # no loading bars or import notices of diffusers/transformers, as in the CLI
    try:
        if split not in SPLITS:
            raise UsageError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
        if figure is not None and figure.exists():
            raise UsageError(f"{figure} exists; choose another --figure")
        run(model, split, structure, appearance, figure, appearance_schedule, _steps(oracle))
    except I2IError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None


def _steps(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        first, last = (int(v) for v in text.split(":"))
    except ValueError:
        raise UsageError(f"--oracle {text!r}: give FROM:TO, two step numbers") from None
    return first, last


if __name__ == "__main__":
    typer.run(main)
