"""The range of a random seed: one rule for every command and library call that takes one.

Seeds are at most 32 bits (as NumPy's legacy seeding takes them) so that the seeds derived from them (seed + i for
the i-th job, seed * 1_000_003 + epoch for a data order) stay inside torch's 64-bit generator state; a negative
seed would be folded silently onto a large one (-1 gives what 2**64 - 1 gives), so it is refused too.
"""

from __future__ import annotations

import numbers

from i2i.errors import UsageError

MAX_SEED = 2**32 - 1


def check_seed(seed: object, what: str = "--seed") -> int:
    """``seed`` as a Python int if it is an integer (of any integral type, NumPy's too) in [0, :data:`MAX_SEED`],
    otherwise a :class:`~i2i.errors.UsageError` that names ``what``."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise UsageError(f"{what} must be an integer (got {seed!r})")
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"{what} {seed} must lie between 0 and {MAX_SEED}")
    return int(seed)
