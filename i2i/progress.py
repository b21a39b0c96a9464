"""Progress bars with ETA on stderr, one JSON object per result on stdout, warnings and per-item errors."""

from __future__ import annotations

import json
import sys
import time
import warnings
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
    object per result on stdout, so stdout stays machine-readable. ``silent`` (:meth:`library`, what library calls
    use when given no reporter) prints nothing at all: warnings go through ``warnings.warn`` and item errors only
    into the call's result.
    """

    quiet: bool = False
    json_mode: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    plain_every: float = 60.0          # without a terminal: seconds between plain progress lines at most
    _bars: int = field(default=0, init=False, repr=False)   # progress bars open now (only the outer one shows)
    reported: set[str] = field(default_factory=set, init=False, repr=False)  # item errors printed so far
    warned: set[str] = field(default_factory=set, init=False, repr=False)    # warnings printed so far
    silent: bool = False

    @classmethod
    def library(cls) -> "Reporter":
        """The reporter of a library call given none: no output of its own (see the class docstring)."""
        return cls(quiet=True, silent=True)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        """Print a warning once per reporter (one command): the same text again (each frame of a clip, each job of
        a batch) is not repeated."""
        if self.silent:
            warnings.warn(message, stacklevel=3)
            return
        if message in self.warned:
            return
        self.warned.add(message)
        self.console.print(f"warning: {message}", style="yellow", markup=False, soft_wrap=True)

    def item_error(self, name: str, reason: str) -> None:
        """Report one failed item (the batch goes on)."""
        text = reason if reason.startswith(name) else f"{name}: {reason}"
        self.reported.update((text, reason))
        if not self.silent:
            self.console.print(f"error: {text}", style="red", markup=False, soft_wrap=True)

    def result(self, record: dict[str, Any]) -> None:
        """Emit one result: a JSON line on stdout in ``json_mode``."""
        if self.json_mode:
            sys.stdout.write(json.dumps(record, default=str) + "\n")
            sys.stdout.flush()

    @contextmanager
    def progress(self, total: int | None, description: str, completed: int = 0) -> Iterator[Callable[..., None]]:
        """A rich progress bar with ETA; yields ``advance(n=1, **fields)`` where fields fill ``{task.fields}``.

        ``completed``: work already done before this call (a resumed run), not counted in the speed. Disabled
        with ``quiet``. The bar shows ``status`` text (e.g. current losses) when given. Without a terminal, plain
        lines instead (:meth:`_plain_progress`). A bar opened while another is open shows nothing (e.g. the
        denoising steps of each frame of a video, under the video's bar of frames).
        """
        if self.quiet or self._bars:
            yield lambda n=1, **fields: None
            return
        self._bars += 1
        try:
            with self._bar(total, description, completed) as advance:
                yield advance
        finally:
            self._bars -= 1

    @contextmanager
    def _bar(self, total: int | None, description: str, completed: int) -> Iterator[Callable[..., None]]:
        if not self.console.is_terminal:
            with self._plain_progress(total, description, completed) as advance:
                yield advance
            return
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[status]}")]
        with Progress(*columns, console=self.console, transient=False, refresh_per_second=4) as bar:
            task = bar.add_task(description, total=total, completed=completed, status="")

            def advance(n: int = 1, **fields: Any) -> None:
                bar.update(task, advance=n, **fields)

            yield advance

    @contextmanager
    def _plain_progress(self, total: int | None, description: str, completed: int) -> Iterator[Callable[..., None]]:
        """Progress for logs and pipes (stderr is not a terminal), where a live bar would print nothing until the
        end: one plain line whenever the status text changes, at least every ``plain_every`` seconds, and at the
        end."""
        start = time.monotonic()
        state = {"done": completed, "status": "", "printed_at": start, "printed_done": completed}

        def line() -> None:
            now = time.monotonic()
            done, text = state["done"], f"{description} {state['done']}"
            if total:
                text += f"/{total} ({100 * done // total}%)"
            text += f", {_clock(now - start)} elapsed"
            if total and done > completed:
                text += f", ETA {_clock((total - done) * (now - start) / (done - completed))}"
            if state["status"]:
                text += f"  {state['status'].strip()}"
            self.console.print(text, markup=False, soft_wrap=True)
            state["printed_at"], state["printed_done"] = now, done

        def advance(n: int = 1, **fields: Any) -> None:
            state["done"] += n
            status = fields.get("status", state["status"])
            changed, state["status"] = status != state["status"], status
            if changed or time.monotonic() - state["printed_at"] >= self.plain_every:
                line()

        try:
            yield advance
        finally:
            if state["done"] != state["printed_done"]:
                line()


def _clock(seconds: float) -> str:
    """``H:MM:SS``."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def warn(reporter: Reporter | None, message: str, stacklevel: int = 2) -> None:
    """A warning through ``reporter`` (the CLI's console), or ``warnings.warn`` for library users without one;
    ``stacklevel`` counts from the caller, as in ``warnings.warn``."""
    if reporter is not None:
        reporter.warn(message)
    else:
        warnings.warn(message, stacklevel=stacklevel + 1)
