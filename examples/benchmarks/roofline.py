"""Compute bounds for the benchmarks: how many FLOPs a piece of work needs, and how fast this machine multiplies.

A benchmark divides a workload's FLOP count (``torch.utils.flop_counter``: convolutions and matrix products, their
backward passes included) by the machine's measured fp32 matrix-multiply rate. The result is the time the work
would take if every FLOP ran at the fastest rate torch reaches on this machine, with no other cost. An fp32
implementation that performs these multiply-adds (direct or matrix-product convolution, what torch's CPU kernels
do) cannot be faster. Only algorithms that trade multiplications for additions (Winograd) could, with slightly
different rounding.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_gflop(fn: Callable[[], object]) -> float:
    """GFLOP that one call of ``fn`` performs in convolutions and matrix products (2 FLOP per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def fp32_matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of an ``n x n`` fp32 matrix product on the CPU over ``repeats`` runs after warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for i in range(repeats + 3):
        t = time.perf_counter()
        a @ b
        if i >= 3:
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9
