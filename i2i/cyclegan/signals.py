"""Stop requests during training: SIGINT/SIGTERM set a flag the loop checks between iterations."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopSignal:
    """SIGINT/SIGTERM set :attr:`requested` (the signal's name); a second signal aborts at once."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def leave_stops_to_the_main_process(worker_id: int) -> None:
    """``worker_init_fn`` of the DataLoaders: a decoding worker ignores SIGINT and SIGTERM, which a scheduler
    (``scancel``, a time limit) sends to the whole process group; the main process handles the stop and ends its
    workers itself (killed by the signal, they made it fail with "DataLoader worker ... is killed" before it could
    save, exit 70)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
