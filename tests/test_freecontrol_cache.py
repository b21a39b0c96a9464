"""The FreeControl disk cache under concurrent processes: readers see a complete entry or none, never a torn one,
and an entry being built is waited for, not built twice."""

import multiprocessing as mp
import time
from pathlib import Path

import torch

from i2i.diffusion.cache import cache_key, entry_lock, load_entry, save_entry

KEY = cache_key({"kind": "test", "n": 1})


def _writer(path: str, seed: int, rounds: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for r in range(rounds):
        n = 1000 + 997 * ((seed + r) % 7)                          # entries of different sizes
        save_entry(Path(path), {"x": torch.randn(n, generator=g)}, KEY, {"writer": seed, "round": r})


def test_two_processes_writing_one_entry_never_leave_a_broken_one(tmp_path):
    path = tmp_path / "bases" / "entry.safetensors"
    ctx = mp.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(str(path), seed, 40)) for seed in (1, 2)]
    for w in writers:
        w.start()
    seen = 0
    while any(w.is_alive() for w in writers):
        entry = load_entry(path, KEY)          # None (missing, torn or corrupt) is allowed only before the first write
        if entry is None:
            assert seen == 0, "an entry that existed was read back torn or corrupt"
            continue
        tensors, info = entry
        assert tensors["x"].numel() >= 1000 and info["writer"] in (1, 2)
        seen += 1
    for w in writers:
        w.join()
        assert w.exitcode == 0
    tensors, info = load_entry(path, KEY)
    assert info["round"] == 39
    assert seen > 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["entry.safetensors"]     # no temp files left


def _holder(path: str, started: str) -> None:
    with entry_lock(Path(path)):
        Path(started).touch()
        time.sleep(1.5)                                             # "building" the entry
        save_entry(Path(path), {"x": torch.ones(3)}, KEY, {"writer": "holder"})


class _Notes:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)


def test_a_second_process_waits_for_the_entry_being_built_and_reads_it(tmp_path):
    path, started = tmp_path / "bases" / "entry.safetensors", tmp_path / "started"
    holder = mp.get_context("spawn").Process(target=_holder, args=(str(path), str(started)))
    holder.start()
    deadline = time.monotonic() + 60
    while not started.exists():
        assert holder.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    notes = _Notes()
    with entry_lock(path, notes):                 # returns only once the holder has stored the entry
        entry = load_entry(path, KEY)
    holder.join()
    assert holder.exitcode == 0
    assert entry is not None and entry[1]["writer"] == "holder"
    assert len(notes.lines) == 1 and "waiting" in notes.lines[0] and path.name in notes.lines[0]
    with entry_lock(path, notes):                 # free now: taken at once, without a note
        pass
    assert len(notes.lines) == 1


def test_a_read_only_cache_folder_takes_no_lock(tmp_path, monkeypatch):
    import builtins

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(builtins, "open", refuse)
    ran = []
    with entry_lock(tmp_path / "bases" / "entry.safetensors"):
        ran.append(True)
    assert ran == [True]


def test_default_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    from i2i.diffusion.cache_dir import default_cache_dir

    monkeypatch.setenv("I2I_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "mine" / "freecontrol"
    monkeypatch.delenv("I2I_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "i2i" / "freecontrol"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "i2i" / "freecontrol"
