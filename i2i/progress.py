"""Progress bars with ETA on stderr, one JSON object per result on stdout, warnings and per-item errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


@dataclass
class Reporter:
    """Where a command's human output (stderr) and machine output (stdout JSON lines) go.

    ``quiet`` hides progress bars and info lines (warnings and errors still print); ``json_mode`` prints one JSON
    object per result on stdout, so stdout stays machine-readable.
    """

    quiet: bool = False
    json_mode: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.console.print(f"warning: {message}", style="yellow", markup=False, soft_wrap=True)

    def item_error(self, name: str, reason: str) -> None:
        """Report one failed item (the batch goes on)."""
        text = reason if reason.startswith(name) else f"{name}: {reason}"
        self.console.print(f"error: {text}", style="red", markup=False, soft_wrap=True)

    def result(self, record: dict[str, Any]) -> None:
        """Emit one result: a JSON line on stdout in ``json_mode``."""
        if self.json_mode:
            sys.stdout.write(json.dumps(record, default=str) + "\n")
            sys.stdout.flush()

    @contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Callable[..., None]]:
        """A rich progress bar with ETA; yields ``advance(n=1, **fields)`` where fields fill ``{task.fields}``.

        Disabled with ``quiet``. The bar shows ``status`` text (e.g. current losses) when given.
        """
        if self.quiet:
            yield lambda n=1, **fields: None
            return
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[status]}")]
        with Progress(*columns, console=self.console, transient=False, refresh_per_second=4) as bar:
            task = bar.add_task(description, total=total, status="")

            def advance(n: int = 1, **fields: Any) -> None:
                bar.update(task, advance=n, **fields)

            yield advance
