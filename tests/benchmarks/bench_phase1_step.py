"""BERT-Large phase-1 step time (batch 8, seq 128) per precision, each in its own process.

Prints figures; asserts only that the runs completed. Not part of the normal test command:

    pytest tests/benchmarks/bench_phase1_step.py -s

Environment: BENCH_MODEL (default bert-large), BENCH_PRECISIONS (default fp32,bf16),
BENCH_STEPS (default 12, of which the first 2 are timing warm-up), BENCH_OUTPUT (keeps the runs).
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.datasets.synth import SynthSpec, synthesize


def test_phase1_step_time_per_precision():
    model = os.environ.get("BENCH_MODEL", "bert-large")
    precisions = os.environ.get("BENCH_PRECISIONS", "fp32,bf16").split(",")
    steps = int(os.environ.get("BENCH_STEPS", "12"))
    root = Path(os.environ.get("BENCH_OUTPUT") or tempfile.mkdtemp(prefix="bench-phase1-"))
    data = root / "data"
    if not data.exists():
        synthesize(data, SynthSpec(examples=1024, eval_examples=8, seed=1))
    rows = []
    for precision in precisions:
        out = root / f"phase1-{precision}"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness",
                "train",
                "--phase",
                "1",
                "--precision",
                precision,
                "--model",
                model,
                "--dataset",
                str(data),
                "--output",
                str(out),
                "--steps",
                str(steps),
                "--batch-size",
                "8",
                "--timing-warmup",
                "2",
                "--eval-examples",
                "8",
                "--log-every",
                "1",
                # a mode this CPU lacks still runs, marked emulated in the table
                "--allow-emulation",
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        r = json.loads((out / "result.json").read_text())
        rows.append((precision, r))
    threads = rows[0][1]["threads"]
    print(f"\n{model} phase 1, batch 8 x seq 128, {steps - 2} measured steps, {threads} threads")
    print(
        f"{'precision':<10} {'step s (median)':>16} {'p10..p90 seq/s':>18} {'seq/s':>7} {'cv':>6} "
        f"{'TFLOP/s':>8} {'data wait':>9}  ISA (oneDNN)"
    )
    for precision, r in rows:
        print(
            f"{precision:<10} {r['step_time_median_s']:>16.3f} "
            f"{r['throughput_p10']:>8.3f}..{r['throughput_p90']:<8.3f} {r['throughput_seq_per_s']:>7.3f} "
            f"{r['step_time_cv']:>6.1%} {r['model_tflops_per_s']:>8.3f} {r['data_wait_fraction']:>9.2%}  "
            f"{r['isa_verified']}{' [emulated]' if r['emulated'] else ''}"
        )
