"""The fused backend's weight gradients read transposed or as views: BERT-Large's weight-gradient
GEMMs alone in both layouts, then whole training steps alternating the two in one process.

    python tests/benchmarks/weight_grad_layout.py --precision bf16 --phase 1 --batch-size 8 --pairs 6

dW = g^T x: handed g^T as a transposed view, oneDNN's AMX matmul runs BERT-Large's QKV and FFN
weight gradients 35-45% slower than on a contiguous copy (docs/fused-amx.md). Part one times, per
weight shape at 1024 tokens, mm(g.t(), x) against mm(transpose_2d(g), x), the transpose included,
and the transpose alone. Part two builds bench peer's fused step and switches every dense layer
between the two (FusedX.transpose_ops) step by step, in alternating order, medians after the
warm-up: the step-level effect, free of the drift between processes. It runs under the harness's
malloc settings, as a worker does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

from harness import kernels
from harness.bench.peer_steps import first_batch, harness_step
from harness.datasets.synth import cached_default
from harness.launch.environment import RETAINED_MALLOC
from harness.machine.platform import detect
from harness.models import load_config
from harness.precision.modes import get_precision
from harness.train import prepare_backend

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


def steps(precision: str, phase: int, batch_size: int, pairs: int, warmup: int) -> None:
    fused: list[torch.nn.Module] = []
    fuse = prepare_backend.fuse

    def keeping(model, ops, **kwargs):
        fused.append(model)
        return fuse(model, ops, **kwargs)

    prepare_backend.fuse = keeping
    raw = first_batch(str(cached_default(1024)), phase, batch_size, load_config("bert-large").vocab_size)
    machine_key = detect().key()
    step, _ = harness_step("bert-large", raw, get_precision(precision), "fused", machine_key)
    ops = kernels.load(machine_key)
    layers = [m for m in fused[0].modules() if hasattr(m, "transpose_ops")]
    for _ in range(warmup):
        step()
    times: dict[bool, list[float]] = {False: [], True: []}
    for n in range(pairs):
        for transposed in (True, False) if n % 2 == 0 else (False, True):
            for layer in layers:
                layer.transpose_ops = ops if transposed else None
            start = time.perf_counter()
            step()
            times[transposed].append(time.perf_counter() - start)
    view, copy = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"bert-large {precision}, phase {phase}, {batch_size} x {raw['input_ids'].shape[1]}, {pairs} pairs: "
        f"view {view:.3f} s, transposed {copy:.3f} s ({copy / view - 1:+.1%})"
    )
    for transposed, label in ((False, "view"), (True, "transposed")):
        print(f"  {label:>10}: " + " ".join(f"{t:.3f}" for t in times[transposed]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", default="bf16", help="a precision mode (bf16)")
    parser.add_argument("--phase", type=int, choices=[1, 2], default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=6, help="steps in each layout (6)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    args = parser.parse_args()
    if any(os.environ.get(k) != v for k, v in RETAINED_MALLOC.items()):
        # glibc reads them at start: without them each GEMM faults its output into fresh pages
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **RETAINED_MALLOC})
    mode = get_precision(args.precision)
    gemms(kernels.load(detect().key()), torch.bfloat16 if mode.autocast == "bfloat16" else torch.float32)
    steps(args.precision, args.phase, args.batch_size, args.pairs, args.warmup)


if __name__ == "__main__":
    main()
