"""pytest-benchmark suites: the BERT encoder-layer training step and the LAMB step (eager and on
the fused backend's kernels), per precision.

Each (kernel, mode) runs in its own process started with the mode's environment (see
kernel_server.py); pytest-benchmark times the round trip of one kernel call, and the IPC cost of
a round trip without work is measured and recorded beside it. Not part of the normal test command:

    pytest tests/benchmarks/bench_kernels.py --benchmark-autosave
    pytest tests/benchmarks/bench_kernels.py --benchmark-compare --benchmark-compare-fail=median:10%

Environment: BENCH_MODEL (default bert-large), BENCH_PRECISIONS (default: every built-in mode),
BENCH_ALLOW_EMULATION=1 to also run modes this CPU lacks (their extra_info says emulated),
BENCH_ROUNDS (default 10), BENCH_BATCH / BENCH_SEQ (default 8 / 128), BENCH_FP32_GEMM (auto, mkl or
onednn, as `harness train --fp32-gemm`; default auto).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.launch.environment import worker_environment
from harness.machine.cores import default_cores
from harness.machine.platform import detect
from harness.precision.modes import BUILTIN, admit, get_precision

SERVER = Path(__file__).with_name("kernel_server.py")
MODEL = os.environ.get("BENCH_MODEL", "bert-large")
BATCH, SEQ = int(os.environ.get("BENCH_BATCH", "8")), int(os.environ.get("BENCH_SEQ", "128"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "10"))
PRECISIONS = os.environ.get("BENCH_PRECISIONS", ",".join(m.name for m in BUILTIN)).split(",")


class KernelServer:
    """A kernel_server.py child; `call()` runs its kernel once."""

    def __init__(self, kernel: str, precision: str) -> None:
        mode = get_precision(precision)
        platform = detect()
        admission = admit(mode, platform)
        if admission.status == "refused":
            pytest.skip(f"{precision}: {admission.reason}")
        if admission.emulated and os.environ.get("BENCH_ALLOW_EMULATION") != "1":
            pytest.skip(f"{precision}: {admission.reason}; BENCH_ALLOW_EMULATION=1 runs it emulated")
        cores = default_cores()
        env = worker_environment(mode, len(cores))
        # the harness importable from this checkout even where it is not installed
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SERVER.parents[2]), env.get("PYTHONPATH")]))
        emulated = str(int(admission.emulated))
        command = [sys.executable, str(SERVER), kernel, precision, MODEL, str(BATCH), str(SEQ), emulated]
        self.child = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            preexec_fn=lambda: os.sched_setaffinity(0, cores),
        )
        ready = self.child.stdout.readline()  # type: ignore[union-attr]
        if not ready.startswith("ready "):
            self.child.kill()
            raise RuntimeError(f"kernel server {kernel}/{precision} did not start: {ready!r}")
        # from here: the child's own affinity is its main thread's, which OpenMP binds to one core
        self.info = {**json.loads(ready[len("ready ") :]), "cores": cores}
        self.kernel_seconds: list[float] = []

    def _ask(self, line: str) -> str:
        self.child.stdin.write(line + "\n")  # type: ignore[union-attr]
        return self.child.stdout.readline()  # type: ignore[union-attr]

    def call(self) -> None:
        answer = self._ask("run")
        self.kernel_seconds.append(float(answer.split()[1]))

    def round_trip_overhead(self, n: int = 50) -> float:
        """Median seconds of a round trip that runs nothing: what the timings include besides work."""
        times = []
        for _ in range(n):
            start = time.perf_counter()
            self._ask("ping")
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def close(self) -> None:
        self.child.stdin.close()  # type: ignore[union-attr]
        self.child.wait(timeout=60)


def _bench(benchmark, kernel: str, precision: str) -> None:
    server = KernelServer(kernel, precision)
    try:
        benchmark.pedantic(server.call, rounds=ROUNDS, warmup_rounds=1, iterations=1)
        benchmark.extra_info.update(
            {
                "precision": precision,
                "model": MODEL,
                "batch": BATCH,
                "seq": SEQ,
                **server.info,
                "round_trip_overhead_s": server.round_trip_overhead(),
                "kernel_median_s": statistics.median(server.kernel_seconds[1:]),
            }
        )
    finally:
        server.close()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_encoder_layer_step(benchmark, precision):
    _bench(benchmark, "encoder-layer", precision)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fused_encoder_layer_step(benchmark, precision):
    """The same layer with the fused backend's layers (harness.kernels.layers)."""
    _bench(benchmark, "fused-encoder-layer", precision)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_lamb_step(benchmark, precision):
    _bench(benchmark, "lamb", precision)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fused_lamb_step(benchmark, precision):
    """The same update in the fused backend's kernels (harness.kernels.lamb)."""
    _bench(benchmark, "fused-lamb", precision)
