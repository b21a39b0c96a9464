"""An old run set aside while a new one starts over it (``train --overwrite``), and put back when that start
fails or is killed before its first checkpoint.

The start moves the old run's :data:`RUN_OUTPUTS` into ``RUN/.overwriting-HOST-PID/`` and renames that folder to
``RUN/.overwritten-HOST-PID/`` once every output is in it (:func:`set_aside`), so a kill in the middle leaves a
folder that says it is partial. The new run deletes it at its first checkpoint; an error before that puts it back
(:func:`put_back`). A kill before that (``kill -9``, the out-of-memory killer) leaves it for the next ``train`` on
the folder: :func:`recover` puts it back, or deletes it when the killed start did write a checkpoint. A folder whose
start may still be running (this host, its process alive) is left alone, and so is one made on another host, whose
process cannot be asked: ``train`` then says what to do (:func:`other_hosts`). Only one process recovers a folder
(it renames it to its own name first), so the ranks of a distributed start cannot both move the same files.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from i2i.cyclegan.checkpoint import LATEST_FILE

# What a run writes in its folder (the evaluations too: they describe weights that are gone with it).
RUN_OUTPUTS = ("checkpoints", "samples", "eval", "eval-best", "log.jsonl", LATEST_FILE, "config.json")
ASIDE_PREFIX = ".overwritten-"       # every output moved
MOVING_PREFIX = ".overwriting-"      # being filled (a kill here left the rest in place)
CLAIMED_PREFIX = ".recovering-"      # being put back by one process


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def set_aside(run_dir: Path) -> Path:
    """Move the old run's outputs out of ``run_dir``; returns the folder that holds them."""
    moving = run_dir / f"{MOVING_PREFIX}{_owner()}"
    moving.mkdir()
    for name in RUN_OUTPUTS:
        if os.path.lexists(run_dir / name):
            os.replace(run_dir / name, moving / name)
    aside = run_dir / f"{ASIDE_PREFIX}{_owner()}"
    os.replace(moving, aside)
    return aside


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def put_back(run_dir: Path, aside: Path, replace_new: bool = True) -> None:
    """The outputs in ``aside`` back into ``run_dir``. ``replace_new``: the new start's outputs of the same names
    go too, also those the old run did not have (an ``aside`` that holds every old output); otherwise only names
    ``aside`` holds are replaced (a partial one: the others were never moved)."""
    for name in RUN_OUTPUTS:
        if os.path.lexists(aside / name):
            _remove(run_dir / name)
            os.replace(aside / name, run_dir / name)
        elif replace_new:
            _remove(run_dir / name)
    aside.rmdir()


def _state(folder: Path) -> str:
    """``"running"`` (this host, process alive), ``"dead"`` (this host, no such process) or ``"elsewhere"``."""
    owner = folder.name.split("-", 1)[1] if "-" in folder.name else ""
    host, _, pid = owner.rpartition("-")
    if host != socket.gethostname():
        return "elsewhere"
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return "dead"
    except PermissionError:
        return "running"
    return "running"


def _asides(run_dir: Path) -> list[Path]:
    return sorted(p for prefix in (ASIDE_PREFIX, MOVING_PREFIX, CLAIMED_PREFIX)
                  for p in run_dir.glob(f"{prefix}*") if p.is_dir())


def _has_checkpoint(run_dir: Path) -> bool:
    from i2i.cyclegan.checkpoint import latest_checkpoint
    from i2i.errors import CheckpointError

    try:
        return latest_checkpoint(run_dir) is not None
    except CheckpointError:                 # a pointer to a folder a kill left half moved
        return False


def recover(run_dir: str | os.PathLike) -> str | None:
    """Put back (or, when the killed start wrote a checkpoint, delete) what a start killed on this host left set
    aside in ``run_dir``; returns a sentence saying so, or None when there was nothing to do."""
    run = Path(run_dir)
    said = None
    for folder in (_asides(run) if run.is_dir() else []):
        if _state(folder) != "dead":
            continue
        claimed = run / f"{CLAIMED_PREFIX}{_owner()}"
        try:
            os.rename(folder, claimed)          # one process only: the others find it gone
        except OSError:
            continue
        whole = folder.name.startswith(ASIDE_PREFIX)
        if whole and _has_checkpoint(run):
            shutil.rmtree(claimed, ignore_errors=True)
            said = said or f"{run}: deleted the earlier run a start with --overwrite had set aside"
            continue
        put_back(run, claimed, replace_new=whole)
        said = (f"{run}: a start with --overwrite was stopped before its first checkpoint; the run it was "
                "replacing is put back")
    return said


def other_hosts(run_dir: str | os.PathLike) -> list[Path]:
    """Folders set aside by starts on other hosts (which this one cannot tell running from killed)."""
    run = Path(run_dir)
    return [f for f in _asides(run) if _state(f) == "elsewhere"] if run.is_dir() else []


def drop_dead(run_dir: Path, own: Path | None) -> None:
    """After the new run's first checkpoint: its own ``own`` folder and those of starts killed on this host go."""
    for folder in _asides(run_dir):
        if folder == own or _state(folder) == "dead":
            shutil.rmtree(folder, ignore_errors=True)


def set_aside_note(run_dir: str | os.PathLike) -> str:
    """For an error about a run folder without checkpoints: where its run is, if a start set it aside."""
    run = Path(run_dir)
    found = _asides(run) if run.is_dir() else []
    if not found:
        return ""
    return (f"; {found[0].name} holds a run set aside by a start with --overwrite that stopped before its first "
            f"checkpoint: `i2i cyclegan train --run-dir {run} --resume` puts it back and continues it")
