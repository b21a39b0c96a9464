"""Splitting one batch over several processes or machines, with no communication between them.

Every process expands the same inputs in the same (sorted) order and keeps every ``count``-th item starting at its
``index`` (:meth:`Shard.take`): the shares are disjoint, their union is the whole batch, and an item's output name
does not depend on the share it falls in, so N processes write exactly the files one process writes. An item is
whatever the command works on (an image file, a video, a diffusion job). Shares are taken from the whole input
list, before anything is skipped, so they stay the same when a stopped job is restarted.

Where the share comes from (:func:`current_shard`):

- ``RANK`` / ``WORLD_SIZE``, set by ``torchrun`` and ``accelerate launch`` for each process (or by hand);
- ``--shard K/N`` (0 <= K < N), for scheduler arrays and loose processes, e.g.
  ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``. Scheduler variables are never read on their own: an
  array job often runs a different folder or checkpoint per task, and must not silently get a share of each;
- both (an array of multi-process launches): share K of N, split again over the launch's ranks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from i2i.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count`` (0-based): the items at positions ``index``, ``index + count``, ..."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"share {self.index}/{self.count}: need 0 <= K < N in K/N")

    def take(self, items: Sequence[T]) -> list[T]:
        """This share of ``items`` (a deterministic, disjoint part; all shares together are ``items``)."""
        return list(items[self.index::self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _whole(text: str) -> bool:
    """``text`` is a whole number in ASCII digits (``str.isdigit`` also takes "²", which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> ``Shard(K, N)``; anything else is a :class:`UsageError`."""
    k, sep, n = text.strip().partition("/")
    if not sep or not _whole(k.strip()) or not _whole(n.strip()):
        raise UsageError(f"--shard {text!r}: give K/N, share K (counted from 0) of N, e.g. 0/4")
    try:
        return Shard(int(k), int(n))
    except UsageError:
        raise UsageError(f"--shard {text}: K must be at least 0 and below N (shares are counted from 0)") from None


def launcher_shard(env: Mapping[str, str] | None = None) -> Shard:
    """The share ``torchrun`` / ``accelerate launch`` give this process: ``RANK`` of ``WORLD_SIZE`` (0 of 1 when
    they are not set)."""
    env = os.environ if env is None else env
    rank, world = env.get("RANK", "0").strip(), env.get("WORLD_SIZE", "1").strip()
    if not _whole(rank) or not _whole(world):
        raise UsageError(f"RANK={rank!r} and WORLD_SIZE={world!r} must be whole numbers")
    if "RANK" not in env and int(world) > 1:       # every process would take share 0
        raise UsageError(f"WORLD_SIZE={world} is set but RANK is not: set both (torchrun and accelerate launch "
                         "do), or use --shard K/N")
    try:
        return Shard(int(rank), int(world))
    except UsageError:
        raise UsageError(f"RANK={rank} is not within WORLD_SIZE={world}") from None


def current_shard(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Shard:
    """This process's share: ``explicit`` (``--shard K/N``) split again by the launcher's ``RANK``/``WORLD_SIZE``
    (rank R of W takes every W-th item of share K: share ``K + R * N`` of ``N * W``, so share K covers the same
    items however many ranks run it); either alone when only one is given."""
    launched = launcher_shard(env)
    if explicit is None:
        return launched
    outer = parse_shard(explicit)
    return Shard(outer.index + launched.index * outer.count, outer.count * launched.count)
