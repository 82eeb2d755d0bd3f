"""`harness train --instances K`: K independent copies of a run on disjoint cores, and their sum.

As torch.backends.xeon.run_cpu does for throughput runs, the cores are cut into K equal,
disjoint sets and each instance trains on its own (its own seed, its own OUTPUT/instance-<k>/),
all started together. When all have ended, OUTPUT holds their aggregate
(harness.results.instances), so reports and gates read an instance run like any other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.launch import worker_environment
from harness.precision import PrecisionMode
from harness.results.instances import aggregate


def split_cores(cores: Sequence[int], k: int) -> list[list[int]]:
    if k < 1 or k > len(cores):
        raise HarnessError(
            f"--instances {k}: expected 1 .. {len(cores)}, one core at least per instance "
            f"(cores: {','.join(map(str, cores))})"
        )
    per = len(cores) // k
    return [list(cores[i * per : (i + 1) * per]) for i in range(k)]


def run_instances(
    argv: Sequence[str],
    output: Path,
    seed: int,
    k: int,
    mode: PrecisionMode,
    cores: Sequence[int],
    context: dict,
    system_malloc: bool = False,
) -> int:
    """Start the K workers together, wait for all, aggregate; the worst exit code wins."""
    output.mkdir(parents=True, exist_ok=True)
    children = []
    for i, mine in enumerate(split_cores(cores, k)):
        # argparse keeps the last of a repeated flag: each instance gets its own output and seed
        command = [
            sys.executable,
            "-m",
            "harness",
            *argv,
            "--output",
            str(output / f"instance-{i}"),
            "--seed",
            str(seed + i),
            "--worker",
        ]
        children.append(
            subprocess.Popen(
                command,
                env=worker_environment(mode, mine, context, system_malloc),
                preexec_fn=lambda mine=mine: os.sched_setaffinity(0, mine),
            )
        )

    def forward(signum: int, frame: object) -> None:
        for child in children:
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [child.wait() for child in children]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    aggregate(output, k)
    codes = [128 - c if c < 0 else c for c in codes]
    return max(codes, key=lambda c: (c != 0, c))
