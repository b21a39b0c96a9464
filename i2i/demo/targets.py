"""The demo model's targets (issue 24 item 2) and the summary of a protocol run (:mod:`i2i.demo.protocol`) that is
checked against them.

A run's rows are one dict per (method, case): the case's fields (:meth:`i2i.demo.protocol.Case.as_dict`), the
``method`` (``"freecontrol"`` or ``"ctrlx"``) and the output's score (:func:`i2i.demo.protocol.score`: ``iou``,
``colour_ok``; FreeControl's structure rows also ``unguided_iou``, the IoU of its unguided sibling, and
``chance_iou``, the case's :meth:`~i2i.demo.protocol.Case.chance_iou`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

METHODS: tuple[str, ...] = ("freecontrol", "ctrlx")
# An appearance case counts as "colour right at the IoU" when its IoU reaches this too (the IoU targets below).
APPEARANCE_IOU: dict[str, float] = {"freecontrol": 0.70, "ctrlx": 0.60}


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


def summarise_method(method: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's numbers over its ``rows`` (either kind may be absent)."""
    structure = [r for r in rows if r["method"] == method and r["kind"] == "structure"]
    appearance = [r for r in rows if r["method"] == method and r["kind"] == "appearance"]
    out: dict[str, Any] = {}
    if structure:
        out.update(structure_cases=len(structure), structure_iou=_mean([r["iou"] for r in structure]),
                   prompt_colour=_mean([r["colour_ok"] for r in structure]))
        out["prompt_shape"] = _mean([r.get("read_shape") == r["sketch"]["shape"] for r in structure])
        if all("unguided_iou" in r for r in structure):
            out["unguided_iou"] = _mean([r["unguided_iou"] for r in structure])
        if all("chance_iou" in r for r in structure):
            out["chance_iou"] = _mean([r["chance_iou"] for r in structure])
        if all("unguided_colour" in r and "unguided_shape" in r for r in structure):
            out["unguided_prompt_colour"] = _mean([r["unguided_colour"] == r["colour"] for r in structure])
            out["unguided_prompt_shape"] = _mean([r["unguided_shape"] == r["sketch"]["shape"] for r in structure])
    if appearance:
        floor = APPEARANCE_IOU[method]
        out.update(appearance_cases=len(appearance), appearance_colour=_mean([r["colour_ok"] for r in appearance]),
                   appearance_iou=_mean([r["iou"] for r in appearance]),
                   appearance_colour_and_iou=_mean([r["colour_ok"] and r["iou"] >= floor for r in appearance]))
    return out


def summarise(rows: list[dict[str, Any]], timing: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every method's numbers; ``timing`` (Ctrl-X's, with ``ratio``) adds ``time_ratio`` to Ctrl-X's."""
    out = {m: summarise_method(m, rows) for m in METHODS if any(r["method"] == m for r in rows)}
    if timing is not None:
        out.setdefault("ctrlx", {})["time_ratio"] = timing["ratio"]
    return out


def checks(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target whose number the summary holds: its label, number, target and pass (None: no target)."""
    out = []
    for t in TARGETS:
        measured = summary.get(t.method, {}).get(t.key)
        if measured is None:
            continue
        cases = summary[t.method].get("appearance_cases" if t.key.startswith("appearance") else "structure_cases")
        out.append({"method": t.method, "key": t.key, "label": t.label, "value": measured,
                    "target": f"{t.op} {t.value:g}" if t.op else "", "passed": t.passed(measured),
                    "cases": cases if t.key != "time_ratio" else None})
    return out


def _number(key: str, value: float) -> str:
    if key == "time_ratio":
        return f"{value:.2f}x"
    return f"{value:.0%}" if "colour" in key or "shape" in key else f"{value:.2f}"


def markdown_table(split: str, summary: dict[str, dict[str, Any]], title: str = "") -> str:
    """The targets as a Markdown table: split, method, measure, cases, number, target, pass; ``title``: a line
    above it (e.g. the settings the run used)."""
    names = {"freecontrol": "FreeControl", "ctrlx": "Ctrl-X"}
    rows = [title, ""] if title else []
    rows += ["| split | method | measure | cases | result | target | pass |", "|---|---|---|---|---|---|---|"]
    for c in checks(summary):
        verdict = {True: "pass", False: "FAIL", None: "—"}[c["passed"]]
        t = next(t for t in TARGETS if (t.method, t.key) == (c["method"], c["key"]))
        target = f"{'≥' if t.op == '>=' else '≤'} {_number(t.key, t.value)}" if t.op else "—"
        rows.append(f"| {split} | {names[c['method']]} | {c['label']} | {c['cases'] or '—'} | "
                    f"{_number(c['key'], c['value'])} | {target} | {verdict} |")
    return "\n".join(rows)
