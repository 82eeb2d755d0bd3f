"""The memory bandwidth a streaming pass reaches, timed in a worker beside the matmul peak: what
an optimizer's passes over weights, gradients and moments far larger than the caches can move.

The pass is the in-place update `a += s * b` that LAMB's last pass makes: a and b read, a written,
12 bytes an fp32 element; `a` is read anyway, so no write-allocate traffic goes uncounted.
"""

from __future__ import annotations

import time

import torch

from harness.results.stats import Spread

MIB = 128
"""Each of the two tensors: far larger than any CPU's last-level cache per core."""


def bandwidth(repeats: int, mib: int = MIB) -> dict:
    """GB/s of the update pass over two fp32 tensors of `mib` MiB: the median and its p10..p90."""
    n = mib * 2**20 // 4
    a, b = torch.ones(n), torch.ones(n)
    a.add_(b, alpha=1e-9)  # pages faulted in, threads started
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a.add_(b, alpha=1e-9)
        rates.append(12 * n / (time.perf_counter() - start) / 1e9)
    spread = Spread.of(rates)
    return {
        "stream_gbytes_per_s": spread.median,
        "stream_p10": spread.p10,
        "stream_p90": spread.p90,
        "stream_mib": mib,
    }
