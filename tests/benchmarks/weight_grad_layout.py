"""BERT-Large's weight-gradient GEMMs with their first operand as a transposed view and as the
fused backend's contiguous transpose.

    python tests/benchmarks/weight_grad_layout.py --precision bf16

dW = g^T x: handed g^T as a transposed view, oneDNN's AMX matmul runs BERT-Large's QKV and FFN
weight gradients in 1.45-1.83x the time they take on a contiguous copy (docs/fused-amx.md). This times, per
weight shape at 1024 tokens, mm(g.t(), x) against mm(transpose_2d(g), x), the transpose included,
and the transpose alone, medians of 30 after 3. The step-level effect: `lever_ab.py weight-grads`.
It runs under the harness's malloc settings, as a worker does.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from harness import kernels
from harness.launch.environment import restart_with_retained_malloc
from harness.machine.platform import detect
from harness.precision.modes import get_precision

TOKENS = 1024
"""Both phases' batches (8 x 128, 2 x 512) hold 1024 tokens."""
SHAPES = [(3072, 1024), (1024, 1024), (4096, 1024), (1024, 4096)]
"""BERT-Large's Linear weights, [out, in]: QKV, attention output, FFN in, FFN out."""


def median_s(work: Callable[[], object], repeats: int = 30) -> float:
    for _ in range(3):
        work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemms(ops, dtype: torch.dtype) -> None:
    print(f"weight-gradient GEMMs, {TOKENS} tokens, {dtype}, median of 30")
    for out, inn in SHAPES:
        g, x = torch.randn(TOKENS, out).to(dtype), torch.randn(TOKENS, inn).to(dtype)
        gflop = 2 * TOKENS * out * inn / 1e9
        view = median_s(lambda g=g, x=x: torch.mm(g.t(), x))
        copy = median_s(lambda g=g, x=x: torch.mm(ops.transpose_2d(g), x))
        alone = median_s(lambda g=g: ops.transpose_2d(g))
        print(
            f"  {out:>4} x {inn:<4}  view {view * 1e3:6.2f} ms ({gflop / view:6.0f} GFLOP/s)  "
            f"transposed {copy * 1e3:6.2f} ms ({gflop / copy:6.0f} GFLOP/s)  transpose {alone * 1e3:5.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # no ISA cap is applied here (a worker sets it before torch loads): avx-fp32 and avx-bf16 would
    # run as fp32 and bf16
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    args = parser.parse_args()
    restart_with_retained_malloc()
    mode = get_precision(args.precision)
    gemms(kernels.load(detect().key()), torch.bfloat16 if mode.autocast == "bfloat16" else torch.float32)


if __name__ == "__main__":
    main()
