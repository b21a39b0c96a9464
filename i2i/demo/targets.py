"""The demo model's targets (issue 24 item 2) and the summary of a protocol run (:mod:`i2i.demo.protocol`) that is
checked against them, each number with its 95% interval over the cases (a split holds 18 of each kind, so a share
can move by about 15 points and a mean IoU by about 0.1 between splits drawn alike).

A run's rows are one dict per (method, case): the case's fields (:meth:`i2i.demo.protocol.Case.as_dict`), the
``method`` (``"freecontrol"`` or ``"ctrlx"``) and the output's score (:func:`i2i.demo.protocol.score`: ``iou``,
``colour_ok``; FreeControl's structure rows also ``unguided_iou``, the IoU of its unguided sibling, and
``chance_iou``, the case's :meth:`~i2i.demo.protocol.Case.chance_iou`).
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Any

METHODS: tuple[str, ...] = ("freecontrol", "ctrlx")
# An appearance case counts as "colour right at the IoU" when its IoU reaches this too (the IoU targets below).
APPEARANCE_IOU: dict[str, float] = {"freecontrol": 0.70, "ctrlx": 0.60}
Z95 = 1.959964                       # the standard normal's 97.5% quantile: two-sided 95% intervals
BOOTSTRAP_DRAWS = 2000


@dataclass(frozen=True)
class Target:
    method: str
    key: str                 # in the method's summary
    label: str
    op: str                  # ">=" or "<="; "" for a number shown without a target
    value: float = 0.0

    def passed(self, measured: float) -> bool | None:
        if not self.op:
            return None
        return measured >= self.value if self.op == ">=" else measured <= self.value


TARGETS: tuple[Target, ...] = (
    Target("freecontrol", "structure_iou", "sketch IoU", ">=", 0.70),
    Target("freecontrol", "unguided_iou", "sketch IoU of the unguided sample (same prompt, seed)", "<=", 0.25),
    Target("freecontrol", "chance_iou", "sketch IoU by chance (objects placed as in the training scenes)", ""),
    Target("freecontrol", "prompt_colour", "prompt's colour", ">=", 0.90),
    Target("freecontrol", "prompt_shape", "prompt's shape", ""),
    Target("freecontrol", "unguided_prompt_colour", "unguided sample: prompt's colour", ""),
    Target("freecontrol", "unguided_prompt_shape", "unguided sample: prompt's shape", ""),
    Target("freecontrol", "appearance_colour", "appearance image's colour (prompt names none)", ">=", 0.90),
    Target("freecontrol", "appearance_iou", "sketch IoU with an appearance image", ">=", 0.70),
    Target("freecontrol", "appearance_colour_and_iou", "appearance cases with colour right and IoU ≥ 0.70", ""),
    Target("ctrlx", "structure_iou", "structure IoU", ">=", 0.74),
    Target("ctrlx", "prompt_colour", "prompt's colour", ">=", 0.90),
    Target("ctrlx", "prompt_shape", "prompt's shape", ""),
    Target("ctrlx", "appearance_colour", "appearance image's colour (prompt names none)", ">=", 0.90),
    Target("ctrlx", "appearance_iou", "structure IoU with an appearance image", ">=", 0.60),
    Target("ctrlx", "appearance_colour_and_iou", "appearance cases with colour right and IoU ≥ 0.60", ""),
    Target("ctrlx", "time_ratio", "time of one image / one plain sample (worst kind)", "<=", 1.3),
)


def _mean(values: list[float]) -> float:
    return round(float(statistics.fmean(values)), 4) if values else float("nan")


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a share ``successes / n`` (95% for the default ``z``): unlike the normal
    approximation it stays inside [0, 1] and is not empty at 0 or n successes."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def bootstrap_interval(values: list[float], draws: int = BOOTSTRAP_DRAWS, level: float = 0.95
                       ) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of ``values`` over the cases (resampled with a fixed seed, so
    the same values give the same interval)."""
    if not values:
        return float("nan"), float("nan")
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(draws))
    tail = (1 - level) / 2
    return round(means[int(tail * draws)], 4), round(means[min(draws - 1, int((1 - tail) * draws))], 4)


def _interval(values: list) -> tuple[float, float]:
    if all(isinstance(v, bool) for v in values):
        return wilson_interval(sum(values), len(values))
    return bootstrap_interval([float(v) for v in values])


def _per_case(method: str, rows: list[dict[str, Any]]) -> dict[str, list]:
    """Each summary number's per-case values (booleans for shares, floats for means) over one method's rows."""
    structure = [r for r in rows if r["method"] == method and r["kind"] == "structure"]
    appearance = [r for r in rows if r["method"] == method and r["kind"] == "appearance"]
    out: dict[str, list] = {}
    if structure:
        out.update(structure_iou=[r["iou"] for r in structure], prompt_colour=[bool(r["colour_ok"]) for r in structure],
                   prompt_shape=[r.get("read_shape") == r["sketch"]["shape"] for r in structure])
        for key in ("unguided_iou", "chance_iou"):
            if all(key in r for r in structure):
                out[key] = [r[key] for r in structure]
        if all("unguided_colour" in r and "unguided_shape" in r for r in structure):
            out["unguided_prompt_colour"] = [r["unguided_colour"] == r["colour"] for r in structure]
            out["unguided_prompt_shape"] = [r["unguided_shape"] == r["sketch"]["shape"] for r in structure]
    if appearance:
        floor = APPEARANCE_IOU[method]
        out.update(appearance_colour=[bool(r["colour_ok"]) for r in appearance],
                   appearance_iou=[r["iou"] for r in appearance],
                   appearance_colour_and_iou=[bool(r["colour_ok"]) and r["iou"] >= floor for r in appearance])
    return out


def summarise_method(method: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's numbers over its ``rows`` (either kind may be absent): each number's mean over the cases, the
    case counts, and under ``intervals`` each number's 95% interval over the cases (:func:`wilson_interval` for a
    share, :func:`bootstrap_interval` for a mean): how far another draw of as many cases could move it."""
    values = _per_case(method, rows)
    out: dict[str, Any] = {key: _mean(v) for key, v in values.items()}
    for kind, key in (("structure", "structure_iou"), ("appearance", "appearance_iou")):
        if key in values:
            out[f"{kind}_cases"] = len(values[key])
    out["intervals"] = {key: _interval(v) for key, v in values.items()}
    return out


def summarise(rows: list[dict[str, Any]], timing: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every method's numbers; ``timing`` (Ctrl-X's, with ``ratio``) adds ``time_ratio`` to Ctrl-X's."""
    out = {m: summarise_method(m, rows) for m in METHODS if any(r["method"] == m for r in rows)}
    if timing is not None:
        out.setdefault("ctrlx", {})["time_ratio"] = timing["ratio"]
    return out


def checks(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target whose number the summary holds: its label, number, 95% interval over the cases (None for the
    time ratio), target and pass (None: no target)."""
    out = []
    for t in TARGETS:
        measured = summary.get(t.method, {}).get(t.key)
        if measured is None:
            continue
        cases = summary[t.method].get("appearance_cases" if t.key.startswith("appearance") else "structure_cases")
        interval = summary[t.method].get("intervals", {}).get(t.key)
        out.append({"method": t.method, "key": t.key, "label": t.label, "value": measured,
                    "interval": list(interval) if interval is not None else None,
                    "target": f"{t.op} {t.value:g}" if t.op else "", "passed": t.passed(measured),
                    "cases": cases if t.key != "time_ratio" else None})
    return out


def _number(key: str, value: float) -> str:
    if key == "time_ratio":
        return f"{value:.2f}x"
    return f"{value:.0%}" if "colour" in key or "shape" in key else f"{value:.2f}"


def markdown_table(split: str, summary: dict[str, dict[str, Any]], title: str = "") -> str:
    """The targets as a Markdown table: split, method, measure, cases, number, its 95% interval, target, pass;
    ``title``: a line above it (e.g. the settings the run used)."""
    names = {"freecontrol": "FreeControl", "ctrlx": "Ctrl-X"}
    rows = [title, ""] if title else []
    rows += ["| split | method | measure | cases | result | 95% interval | target | pass |",
             "|---|---|---|---|---|---|---|---|"]
    for c in checks(summary):
        verdict = {True: "pass", False: "FAIL", None: "—"}[c["passed"]]
        t = next(t for t in TARGETS if (t.method, t.key) == (c["method"], c["key"]))
        target = f"{'≥' if t.op == '>=' else '≤'} {_number(t.key, t.value)}" if t.op else "—"
        spread = "–".join(_number(t.key, v) for v in c["interval"]) if c["interval"] else "—"
        rows.append(f"| {split} | {names[c['method']]} | {c['label']} | {c['cases'] or '—'} | "
                    f"{_number(c['key'], c['value'])} | {spread} | {target} | {verdict} |")
    return "\n".join(rows)
