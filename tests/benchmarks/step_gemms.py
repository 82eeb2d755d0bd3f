"""Each GEMM shape's time inside real BERT-Large training steps, as oneDNN reports it: bench peer's
step, the timed steps run under oneDNN's verbose mode. Prints, per shape and operand layout, its
calls a step, its milliseconds a step and its GFLOP/s.

    python tests/benchmarks/step_gemms.py --precision bf16 --phase 1 --steps 2

oneDNN runs the bf16 GEMMs (and MKL the fp32 ones, which it does not report: bf16 only). A layout
reads `ab` for a row-major operand and `ba` (or `acb` batched) for a transposed view, as src,
weights, dst. The rows that the fused backend's row split hands one thread each (harness.kernels.
row_split) run side by side: their milliseconds add up both threads' time, about twice the wall
time. The verbose lines cost little next to these GEMMs, but the step is not timed here. It runs
under the harness's malloc settings, as a worker does. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from harness.bench.peer_steps import first_batch, harness_step
from harness.datasets.synth import cached_default
from harness.launch.environment import restart_with_retained_malloc
from harness.machine.platform import detect
from harness.models import load_config
from harness.precision.modes import admit, get_precision


def verbose_lines(run, path: Path) -> list[str]:
    """oneDNN's verbose lines printed while `run` ran: written by the library to file descriptor 1,
    which is pointed at `path` meanwhile."""
    with open(path, "w") as sink:
        saved = os.dup(1)
        os.dup2(sink.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                run()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    return path.read_text().splitlines()


def flops(problem: str) -> int:
    """2 M N K (times the batch) of a matmul's problem description, `MxK:KxN` or `BxMxK:BxKxN`."""
    a, b = ([int(d) for d in side.split("x")] for side in problem.split(":"))
    total = 2 * a[-2] * a[-1] * b[-1]
    for d in a[:-2]:
        total *= d
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", default="bf16", choices=["bf16"])
    parser.add_argument("--phase", type=int, choices=[1, 2], default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="steps under verbose (2)")
    parser.add_argument("--warmup", type=int, default=3, help="steps first (3)")
    args = parser.parse_args()
    restart_with_retained_malloc()

    here = detect()
    mode = get_precision(args.precision)
    vocab = load_config("bert-large").vocab_size
    raw = first_batch(str(cached_default(1024)), args.phase, args.batch_size, vocab)
    step, _ = harness_step("bert-large", raw, mode, "fused", here.key(), admit(mode, here).gemm_isa)
    for _ in range(args.warmup):
        step()
    with tempfile.TemporaryDirectory() as scratch:
        lines = verbose_lines(lambda: [step() for _ in range(args.steps)], Path(scratch) / "verbose.txt")
    # onednn_verbose,v1,primitive,exec,cpu,matmul,<impl>,<prop>,<memory descriptors>,<attrs>,<aux>,
    # <problem>,<ms>
    times: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for line in lines:
        fields = line.split(",")
        if len(fields) < 13 or fields[3] != "exec" or fields[5] != "matmul":
            continue
        layouts = " ".join(md.split(":")[4] for md in fields[8].split())
        times[(fields[-2], layouts, fields[6].split(":")[-1])].append(float(fields[-1]))
    seq = raw["input_ids"].shape[1]
    print(f"bert-large {args.precision}, phase {args.phase}, {args.batch_size} x {seq}, {args.steps} steps")
    print(f"{'problem':26} {'layouts':14} {'isa':18} {'calls/step':>10} {'ms/step':>8} {'GFLOP/s':>8}")
    total = 0.0
    for (problem, layouts, isa), ms in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        per_step = sum(ms) / args.steps
        total += per_step
        rate = flops(problem) * len(ms) / (sum(ms) / 1e3) / 1e9
        print(f"{problem:26} {layouts:14} {isa:18} {len(ms) / args.steps:10.0f} {per_step:8.1f} {rate:8.0f}")
    print(f"{'all':26} {'':14} {'':18} {'':10} {total:8.1f}")


if __name__ == "__main__":
    main()
