"""One exception family for everything a user can cause, each with its own exit code.

The CLI turns an :class:`I2IError` into one line on stderr and exits with :attr:`I2IError.exit_code`;
a traceback is printed only with ``--debug``. Library callers can catch :class:`I2IError`.

Exit codes (also listed in docs/cli.md):

====  ======================================================================
0     success: every input was processed
1     partial failure: some inputs failed, the rest were written (every input failed alike: that failure's code)
2     bad usage: an invalid flag value or combination (also Typer's own usage errors, and out of memory)
3     input error: a missing, unreadable or invalid input file, folder or dataset
4     checkpoint or model error: missing, corrupt or incompatible weights/config
5     numerical error: NaN or inf in a loss; the last good checkpoint is kept
6     output error: an output cannot be written (permissions, disk full, exists)
70    internal error: a bug in i2i (rerun with --debug and report the traceback)
130   interrupted (Ctrl-C / SIGINT / SIGTERM); training saves a checkpoint first
====  ======================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_CHECKPOINT = 4
EXIT_NUMERICAL = 5
EXIT_OUTPUT = 6
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class I2IError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    exit_code: int = EXIT_USAGE


class UsageError(I2IError):
    """An invalid option value or combination."""

    exit_code = EXIT_USAGE


class InputError(I2IError):
    """An input file, folder or dataset is missing, unreadable or invalid."""

    exit_code = EXIT_INPUT


class CheckpointError(I2IError):
    """Weights or a model config are missing, corrupt, unsafe or do not match the architecture."""

    exit_code = EXIT_CHECKPOINT


class NumericalError(I2IError):
    """A loss or gradient became NaN/inf."""

    exit_code = EXIT_NUMERICAL


class OutputError(I2IError):
    """An output cannot be written (permissions, full disk, would overwrite without --overwrite)."""

    exit_code = EXIT_OUTPUT


class PartialFailure(I2IError):
    """Some items of a batch failed; the others were processed. ``failures`` holds (item, reason) pairs."""

    exit_code = EXIT_PARTIAL

    def __init__(self, message: str, failures: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


def batch_failure(errors: list[I2IError], failures: list[tuple[str, str]], total: int, written: int,
                  noun: str = "input(s)") -> PartialFailure:
    """The error that ends a batch with ``failures`` (``(item, reason)``, raised as ``errors``) of ``total``
    items: exit 1 when something was written or the failures differ in kind; when nothing was written and every
    failure is of one kind, that kind's exit code (every output already there is 6, not 1)."""
    error = PartialFailure(f"{len(failures)} of {total} {noun} failed", failures)
    codes = {e.exit_code for e in errors}
    if written == 0 and len(errors) == len(failures) and len(codes) == 1:
        error.exit_code = codes.pop()
    return error


class Interrupted(I2IError):
    """The run was interrupted by SIGINT/SIGTERM after saving what could be saved."""

    exit_code = EXIT_INTERRUPTED


class OutOfMemory(UsageError):
    """The request does not fit the device's memory (exit 2, as for a flag value this machine cannot take)."""


def out_of_memory(exc: BaseException) -> OutOfMemory | None:
    """``exc`` as an :class:`OutOfMemory` when it is an allocation failure (Python's ``MemoryError``, torch's
    ``OutOfMemoryError`` on a GPU, or its CPU allocator's "can't allocate memory"), else None."""
    text = str(exc)
    if not (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in text or "out of memory" in text.lower()):
        return None
    detail = text.splitlines()[0][:200] if text else type(exc).__name__
    return OutOfMemory(f"out of memory ({detail}): try a smaller image size or batch, fewer images at once, or a "
                       "device with more memory")
