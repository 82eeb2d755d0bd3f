"""GEMMs whose rows are split among the threads (csrc/mm_rows.cpp) where that beats the library's
own threading, decided per shape by timing both at the shape's first call.

On the AMX Xeon with 2 threads oneDNN ran BERT-Large's square GEMMs (the attention output
projection at 1024 tokens, forward and both gradients: [1024, 1024] x [1024, 1024]) at its
one-thread rate, 1360-1450 GFLOP/s, and each thread's half of the rows alone at 2390-2520
together; the larger GEMMs ran at 2500-2800 either way (docs/fused-amx.md). Which shapes gain
depends on the library's heuristics and the thread count, so each process measures instead of a
table: a shape's first call runs both ways, takes the split only where it gave the same bits and
was clearly faster, and every later call of the shape goes the chosen way.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from types import ModuleType

import torch

TRIALS = 5
"""Calls of each way timed at a shape's first call, the two ways alternating; their medians
decide."""

MARGIN = 0.9
"""The split is taken only where its median is under this share of the library's. A near tie goes
to the library: on the AMX Xeon the QKV weight gradient ([3072, 1024] x [1024, 1024], bf16), which
oneDNN runs at 2391 GFLOP/s in the step (65 ms a step), was split in 4 of 14 processes under the
best of three calls each way, and then took 78-113 ms a step (docs/fused-amx-prefetch.md). The square
shapes the split is for ran 1.7x faster split."""

MIN_FLOPS = 2**31
"""Smaller GEMMs keep the library's threading undecided: a decision costs twelve calls of the
GEMM, and the small shapes are the ones that change from batch to batch (the last layer's rows at
the masked tokens), which would pay for one at nearly every step. BERT-Large's GEMMs over all
tokens of a batch of 1024 have 2^31 FLOPs and more."""

_split: dict[tuple, bool] = {}
"""Per (shapes and strides, dtype, threads): whether its rows are split. The process's."""


def mm(a: torch.Tensor, b: torch.Tensor, ops: ModuleType) -> torch.Tensor:
    """a @ b for a contiguous [m, k] `a`, the rows split among the threads where this process
    found that faster for the shape."""
    key = (tuple(a.shape), a.stride(), tuple(b.shape), b.stride(), a.dtype, torch.get_num_threads())
    split = _split.get(key)
    if split is None:
        split = _split[key] = _splits(a, b, ops)
    return ops.mm_rows(a, b) if split else torch.mm(a, b)


def _splits(a: torch.Tensor, b: torch.Tensor, ops: ModuleType) -> bool:
    if torch.get_num_threads() < 2 or not a.is_contiguous() or 2 * a.numel() * b.shape[1] < MIN_FLOPS:
        return False
    # a split that rounds otherwise (another kernel for the smaller rows) would make a run's bits
    # depend on a timing: only the same bits qualify
    if not torch.equal(ops.mm_rows(a, b), torch.mm(a, b)):
        return False
    split, library = _medians(lambda: ops.mm_rows(a, b), lambda: torch.mm(a, b))
    return split < MARGIN * library


def _medians(first: Callable[[], torch.Tensor], second: Callable[[], torch.Tensor]) -> tuple[float, float]:
    """The median time of each call over TRIALS calls, alternating: a change of the host's speed
    during the trials falls on both."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(TRIALS):
        for call, into in zip((first, second), times, strict=True):
            start = time.perf_counter()
            call()
            into.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])
