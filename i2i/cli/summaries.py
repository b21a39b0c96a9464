"""``i2i merge-summaries``: one summary for a batch that ran as several processes (each with ``--json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from i2i.cli.common import DebugOpt, JsonOpt, QuietOpt, run_guarded
from i2i.progress import Reporter


def merge_summaries(
    files: Annotated[list[Path], typer.Argument(help="JSON-lines files that the processes' --json output went to "
                                                "(per-image lines are passed over; a rank's last summary counts).",
                                                show_default=False)],
    quiet: QuietOpt = False, json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Add up the summary lines of every process of a sharded batch: counts, failed inputs with their reasons,
    and the ranks that left no summary. Exit 0 when every rank finished and nothing failed, 1 when inputs failed,
    3 when a rank's summary is missing (killed, or still running)."""
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        from i2i.errors import InputError, PartialFailure
        from i2i.summary import merge_summaries as merge
        from i2i.summary import read_summaries

        merged = merge(read_summaries(files))
        reporter.result(merged)
        counts = ", ".join(f"{key} {value:,}" for key, value in merged.items()
                           if isinstance(value, int) and key not in ("world_size", "total_inputs", "inputs"))
        reporter.info(f"{merged['command']}, {len(merged['ranks'])} of {merged['world_size']} rank(s): {counts} "
                      f"of {merged.get('inputs', 0):,} input(s)")
        for failure in merged["failures"]:
            reporter.item_error(str(failure.get("input")), str(failure.get("error")))
        if merged["missing_ranks"]:
            missing = ", ".join(map(str, merged["missing_ranks"]))
            raise InputError(f"rank(s) {missing} of {merged['world_size']} left no summary (killed, stopped by an "
                             "error before the end, or still running)")
        if merged["failures"]:
            raise PartialFailure(f"{len(merged['failures'])} input(s) failed", merged["failures"])

    run_guarded(go, debug, reporter)
