"""What the training loop calls around its steps: the stop flag, the step clock, the kernel census."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict

from harness.launch.job import WorkerContext
from harness.precision.census import Census, ceiling_problem, census_problem
from harness.precision.modes import PrecisionMode
from harness.precision.probe import Recording, ceilings, recorded
from harness.results.time_split import TimeSplit
from harness.train.distributed import Ranks


class StopFlag:
    """SIGINT / SIGTERM finish the current step, save a checkpoint and end as `interrupted`."""

    def __init__(self) -> None:
        self.raised = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.raised = True


FORWARD_BACKWARD, OPTIMIZER = "forward_backward", "optimizer"
"""The parts of a step's own work that StepClock.computing times."""


class StepClock:
    """One step's wall time, its share waiting for data, the model's own work in named parts
    (forward and backward, the optimizer), and the CPU time the process spent."""

    def __init__(self) -> None:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.data_s = 0.0
        self.parts: dict[str, float] = {}
        self.wall_s: float | None = None

    def data_ready(self) -> None:
        self.data_s = time.perf_counter() - self.start

    @contextlib.contextmanager
    def computing(self, part: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.parts[part] = self.parts.get(part, 0.0) + time.perf_counter() - t

    @property
    def compute_s(self) -> float:
        return sum(self.parts.values())

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def stop(self) -> float:
        """The step's wall time, kept: the census step is split after it is recorded."""
        self.wall_s = self.elapsed()
        return self.wall_s

    def cpu_s(self) -> float:
        return time.process_time() - self.cpu_start


class KernelCensus:
    """The proof of what a run computes: the ISA ceilings oneDNN and MKL report at start, and the
    kernels of one real training step, recorded with the libraries' verbose on. That step runs
    slower, so it must be one the throughput statistics leave out."""

    def __init__(self, mode: PrecisionMode, context: WorkerContext) -> None:
        self.mode, self.context = mode, context
        self.onednn_isa, self.mkl_header = ceilings()
        self.step: int | None = None
        self.census: Census | None = None
        self.split: TimeSplit | None = None
        print(
            f"{mode.name}: ISA cap {mode.isa_cap}, oneDNN reports {self.onednn_isa!r}, "
            f"MKL {self.mkl_header!r}"
            + (f"; GEMMs must run on {context.gemm_isa}" if context.gemm_isa else "")
            + (f"; EMULATED (missing {', '.join(context.missing_features)})" if context.emulated else ""),
            file=sys.stderr,
            flush=True,
        )

    def ceiling_problem(self) -> str | None:
        return ceiling_problem(self.mode, self.onednn_isa)

    def recording(self, step: int) -> contextlib.AbstractContextManager[Recording | None]:
        return recorded() if step == self.step else contextlib.nullcontext()

    def judge(self, text: str, ranks: Ranks, clock: StepClock) -> str | None:
        """The census of the recorded step and where its time went; a problem when it contradicts
        the mode on any rank."""
        self.census = Census.from_verbose(text, self.mkl_header, self.onednn_isa)
        assert clock.wall_s is not None, "the census step is split once its clock is stopped"
        self.split = TimeSplit.of_step(
            self.census.gemm_seconds(),
            clock.wall_s,
            clock.data_s,
            clock.parts.get(FORWARD_BACKWARD, 0.0),
            clock.parts.get(OPTIMIZER, 0.0),
        )
        problem = census_problem(self.mode, self.context.gemm_isa, self.census)
        # every rank stops alike, or the others would wait for it at their next collective
        if ranks.sum([float(problem is not None)])[0] > 0:
            return problem or "another rank's kernel census contradicts the mode"
        shares = ", ".join(f"{k} {v:.1%}" for k, v in self.census.gemm_isa_share().items())
        print(
            f"step {self.step}: kernel census: GEMM time by ISA "
            f"{shares or 'none in oneDNN or MKL (PyTorch computed them itself)'}",
            file=sys.stderr,
            flush=True,
        )
        return None

    def fields(self) -> dict:
        """What the run's result records of the ISA and of the census step."""
        isa = {
            "isa_cap": self.mode.isa_cap,
            "isa_verified": self.onednn_isa,
            "mkl_isa": self.mkl_header,
            "emulated": self.context.emulated,
            "gemm_isa_expected": self.context.gemm_isa,
        }
        if self.census is None:
            return isa
        split = asdict(self.split) if self.split else None
        return {**isa, **self.census.summary(), "census_step": self.step, "time_split": split}
