"""The FreeControl disk cache under concurrent writers: readers see a complete entry or none, never a torn one."""

import multiprocessing as mp
from pathlib import Path

import torch

from i2i.diffusion.cache import cache_key, load_entry, save_entry

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
