"""The table ``i2i cyclegan eval`` prints: one row per direction, one column per number in the summary."""

from __future__ import annotations

from typing import Any

from i2i.progress import Reporter

# summary key -> column title, in print order; KID is shown as "mean ± std"
COLUMNS = {"images": "n", "fid": "FID", "kid": "KID ± std", "cycle_l1": "cycle L1", "identity_l1": "idt L1",
           "all_accuracy": "all", "shape_accuracy": "shape", "colour_accuracy": "colour",
           "position_accuracy": "position"}
FID_BIAS_BELOW = 2000


def _cell(stats: dict[str, Any], key: str) -> str:
    value = stats[key]
    if key == "kid":
        return f"{value:.4f} ± {stats['kid_std']:.4f}"
    if key == "images":
        return str(value)
    return f"{value:.4g}"


def print_eval_table(summary: dict[str, Any], reporter: Reporter) -> None:
    """Print the per-direction numbers (stderr), with what they were measured on."""
    if reporter.quiet:
        return
    from rich import box
    from rich.table import Table

    rows = {d: summary[d] for d in ("AtoB", "BtoA") if d in summary}
    keys = [k for k in COLUMNS if any(k in stats for stats in rows.values())]
    title = []
    if summary.get("best"):
        title.append(f"checkpoint: best (iteration {summary['best'].get('iter')})")
    if "features" in summary:
        title.append(f"features: {summary['features']}")
    if "image_size" in summary:
        title.append(f"images: {summary['image_size']}")
    table = Table(title="; ".join(title) or None, box=box.SIMPLE_HEAD)
    table.add_column("dir", no_wrap=True)
    for k in keys:
        table.add_column(COLUMNS[k], justify="right", no_wrap=True)
    for direction, stats in rows.items():
        table.add_row(direction, *(_cell(stats, k) if k in stats else "-" for k in keys))
    reporter.console.print(table)
    small = [s["images"] for s in rows.values() if "fid" in s and s["images"] < FID_BIAS_BELOW]
    if small:
        reporter.info(f"note: FID on {min(small)} images is biased upwards; compare FIDs only at equal set sizes "
                      "and prefer KID on small test sets")
