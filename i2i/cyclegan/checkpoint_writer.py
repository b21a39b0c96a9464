"""Writing checkpoint folders atomically: temp folder, fsync, rename; then the ``latest`` pointer and pruning."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from i2i.cyclegan import checkpoint as ckpt
from i2i.errors import OutputError
from i2i.images import atomic_path, fsync_dir

if TYPE_CHECKING:
    from i2i.cyclegan.methods.base import Saved


class CheckpointWriter:
    """Writes complete checkpoint folders atomically and keeps the ``latest`` pointer and pruning."""

    def __init__(self, run_dir: Path, keep: int) -> None:
        self.run_dir, self.keep = run_dir, keep
        self.root = run_dir / "checkpoints"

    def clean_stale(self) -> None:
        if self.root.is_dir():
            for p in self.root.glob(".*.tmp*"):
                shutil.rmtree(p, ignore_errors=True)

    def write(self, name: str, nets: "dict[str, Saved]", state_fn: Callable[[Path], None] | None,
              update_latest: bool) -> Path:
        final = self.root / name
        tmp = self.root / f".{name}.tmp{os.getpid()}"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for net_name, saved in nets.items():
                ckpt.save_weights(tmp / f"{net_name}.safetensors", ckpt.unwrap(saved.net).state_dict(), saved.fmt,
                                  saved.config)
            if state_fn is not None:
                state_fn(tmp)
                for f in tmp.iterdir():
                    with open(f, "rb+") as fh:
                        os.fsync(fh.fileno())
            fsync_dir(tmp)
            if final.exists():
                old = self.root / f".{name}.old{os.getpid()}"
                os.replace(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, final)
            fsync_dir(self.root)
            if update_latest:
                with atomic_path(self.run_dir / ckpt.LATEST_FILE, overwrite=True) as p:
                    p.write_text(f"checkpoints/{name}\n", encoding="utf-8")
                fsync_dir(self.run_dir)
                self._prune(keep_name=name)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputError(f"{final}: cannot write checkpoint ({exc.strerror or exc}); "
                              "the previous checkpoint is intact") from exc
        return final

    def _prune(self, keep_name: str) -> None:
        iters = sorted(p for p in self.root.glob("iter_*") if p.is_dir())
        for p in iters[:-self.keep]:
            if p.name != keep_name:
                shutil.rmtree(p, ignore_errors=True)


def load_nets(folder: Path, nets: "dict[str, Saved]") -> None:
    """Load every network of ``nets`` strictly from ``folder/<name>.safetensors``."""
    for name, saved in nets.items():
        path = folder / f"{name}.safetensors"
        state, _ = ckpt.read_weights(path, saved.fmt)
        ckpt.load_state_strict(ckpt.unwrap(saved.net), state, str(path))
