"""``i2i score``: structure distance (DINO self-similarity) and CLIP score of generated images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from i2i.cli.common import DebugOpt, DeviceOpt, JsonOpt, QuietOpt, quiet_libraries, run_guarded
from i2i.progress import Reporter

DINO_HELP = ("DINO ViT for the structure score: hub id or local folder (the default is the model the "
             "FreeControl/Ctrl-X evaluations use).")
CLIP_HELP = "CLIP model for the CLIP score: hub id or local folder."
SCORES_PANEL = "Scores (--score)"
DEFAULT_DINO, DEFAULT_CLIP = "facebook/dino-vitb8", "openai/clip-vit-base-patch32"

# The same flags on every diffusion command: --score, with --dino/--clip as in `i2i score`.
SELF_SIM = "self_sim (structure distance to the condition, DINO ViT-B/8; lower keeps it better)"
CLIP_SCORE = "clip_score (CLIP image-prompt similarity; higher follows the prompt better)"
LOADED = ("The weights are loaded before the diffusion model; offline without them, exit 4 names what to "
          "download.")
ScoreOpt = Annotated[bool, typer.Option(
    "--score", help=f"Add {SELF_SIM} and {CLIP_SCORE} to each JSON result, as `i2i score` computes them. {LOADED}",
    rich_help_panel=SCORES_PANEL)]
TextScoreOpt = Annotated[bool, typer.Option(                  # a method without a condition image
    "--score", help=f"Add {CLIP_SCORE} to each JSON result, as `i2i score` computes it. {LOADED}",
    rich_help_panel=SCORES_PANEL)]
JobDinoOpt = Annotated[str, typer.Option("--dino", help="With --score: " + DINO_HELP, rich_help_panel=SCORES_PANEL)]
JobClipOpt = Annotated[str, typer.Option("--clip", help="With --score: " + CLIP_HELP, rich_help_panel=SCORES_PANEL)]


def job_scorers(score: bool, dino: str, clip: str, device, conditioned: bool = True):
    """The scorers for ``--score`` (loaded now), or None without it: both models, or only CLIP for a method
    without a condition image (``conditioned=False``: plain text-to-image)."""
    if not score:
        return None
    from i2i.metrics.score import SCORES, load_scorers

    return load_scorers(SCORES if conditioned else ("clip",), dino, clip, device)


def score(
    images: Annotated[Optional[list[Path]], typer.Argument(help="Generated images.", show_default=False)] = None,
    condition: Annotated[Optional[list[Path]], typer.Option(
        "--condition", help="Condition image(s): one for all images or one per image (repeat the flag).")] = None,
    prompt: Annotated[Optional[list[str]], typer.Option(
        "--prompt", help="Prompt(s): one for all images or one per image (repeat the flag).")] = None,
    jsonl: Annotated[Optional[Path], typer.Option(
        "--jsonl", help="Score the records of a JSON-lines file instead (e.g. saved `i2i freecontrol --json` or "
        "`i2i ctrlx --json` output): keys image, condition (or Ctrl-X's structure), prompt; relative paths are taken "
        "from the current folder.")] = None,
    scores: Annotated[Optional[str], typer.Option(
        "--scores", help="self-sim, clip or both, comma-separated (default: what the inputs allow).")] = None,
    dino: Annotated[str, typer.Option("--dino", help=DINO_HELP)] = DEFAULT_DINO,
    clip: Annotated[str, typer.Option("--clip", help=CLIP_HELP)] = DEFAULT_CLIP,
    device: DeviceOpt = None, quiet: QuietOpt = False, json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Score generated images: self_sim (MSE of DINO ViT-B/8 key self-similarity against the condition; lower
    keeps the structure better) and clip_score (100 x cosine of CLIP image and prompt embeddings; higher follows
    the prompt better). Needs those weights locally or from the hub; offline, a clear error names them."""
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        from i2i.device import resolve_device
        from i2i.errors import UsageError
        from i2i.metrics.score import check_records, load_scorers, record_condition, score_records

        records = _records(images, condition, prompt, jsonl)
        wanted = tuple(s.strip() for s in scores.split(",") if s.strip()) if scores else tuple(
            s for s, given in (("self-sim", record_condition), ("clip", lambda r: r.get("prompt")))
            if any(given(r) for r in records))
        if not wanted:
            raise UsageError("nothing to score: give --condition (structure) and/or --prompt (CLIP score)")
        check_records(records, wanted)                # inputs and flags before any weights
        quiet_libraries()
        scorers = load_scorers(wanted, dino, clip, resolve_device(device))
        rows = []
        with reporter.progress(len(records), "score") as advance:
            for rec in records:
                row = score_records([rec], scorers)[0]
                rows.append(row)
                reporter.result(row)
                advance(1)
        _print_table(rows, reporter)

    run_guarded(go, debug, reporter)


def _records(images, condition, prompt, jsonl) -> list[dict]:
    """One record per image, from the flags or from a JSON-lines file."""
    import json

    from i2i.errors import InputError, UsageError

    if jsonl is not None:
        if images or condition or prompt:
            raise UsageError("give either --jsonl or images with --condition/--prompt, not both")
        if not jsonl.is_file():
            raise InputError(f"{jsonl}: no such file")
        records = []
        for n, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{jsonl}:{n}: not JSON ({exc.msg})") from exc
        records = [r for r in records if isinstance(r, dict) and r.get("image")]
        if not records:
            raise InputError(f"{jsonl}: no records with an 'image'")
        return records
    if not images:
        raise UsageError("give generated images (or --jsonl FILE)")
    from i2i.metrics.score import _broadcast

    conds = _broadcast(condition, len(images), "--condition values") or [None] * len(images)
    prompts = _broadcast(prompt, len(images), "--prompt values") or [None] * len(images)
    return [{"image": str(i), "condition": str(c) if c else None, "prompt": p}
            for i, c, p in zip(images, conds, prompts)]


def _print_table(rows: list[dict], reporter: Reporter) -> None:
    if reporter.quiet or reporter.json_mode:
        return
    from rich import box
    from rich.table import Table

    keys = [k for k in ("self_sim", "clip_score") if any(k in r for r in rows)]
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("image", overflow="fold")
    for k in keys:
        table.add_column(k, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(str(r["image"]), *(f"{r[k]:.4f}" if k in r else "-" for k in keys))
    if len(rows) > 1:
        table.add_row("mean", *(f"{sum(r[k] for r in rows if k in r) / sum(k in r for r in rows):.4f}"
                                for k in keys))
    reporter.console.print(table)
