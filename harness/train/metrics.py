"""The metrics processor: the training loop hands it numbers; it records, prints and summarises.

Every step and evaluation goes to the run's metrics file (harness.results.files) as it comes.
Progress goes to stderr at a fixed step interval.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from harness.results.files import MetricsWriter
from harness.results.records import EvalRecord, StepRecord, is_eval
from harness.results.stats import Spread


class MetricsProcessor:
    def __init__(self, run_dir: Path | None, total_steps: int, log_every: int, resume_from: int = 0) -> None:
        """run_dir None: a rank other than 0, which keeps its numbers to itself (no file, no output)."""
        self.total_steps, self.log_every = total_steps, log_every
        self.steps: list[StepRecord] = []
        self.evals: list[EvalRecord] = []
        self._writer = MetricsWriter(run_dir, resume_from) if run_dir is not None else None
        for record in self._writer.kept if self._writer else []:
            if is_eval(record):
                self.evals.append(EvalRecord.from_dict(record))
            else:
                self.steps.append(StepRecord.from_dict(record))
        self._started = time.perf_counter()
        self._first_step = resume_from

    def _write(self, record: dict) -> None:
        if self._writer is not None:
            self._writer.write(record)

    def step(self, m: StepRecord) -> None:
        self.steps.append(m)
        self._write(asdict(m))
        if self._writer is not None and (m.step % self.log_every == 0 or m.step == self.total_steps):
            done = m.step - self._first_step
            elapsed = time.perf_counter() - self._started
            eta = elapsed / done * (self.total_steps - m.step) if done else 0.0
            recent = self.steps[-self.log_every :]
            wait = sum(s.data_time_s for s in recent) / sum(s.step_time_s for s in recent)
            print(
                f"step {m.step}/{self.total_steps} | loss {m.loss:.4f} "
                f"(mlm {m.mlm_loss:.3f}, nsp {m.nsp_loss:.3f}) | lr {m.lr:.2e} | "
                f"{Spread.of([s.seq_per_s for s in recent]).median:.2f} seq/s | "
                f"data wait {wait:.1%} | "
                f"ETA {clock(eta)}",
                file=sys.stderr,
                flush=True,
            )

    def evaluation(self, step: int, results: dict) -> None:
        record = {"step": step, **results}
        self.evals.append(EvalRecord.from_dict(record))
        self._write(record)
        print(
            f"eval at step {step}: mlm accuracy {results['eval_mlm_accuracy']:.4f}, "
            f"loss {results['eval_loss']:.4f}, nsp accuracy {results['eval_nsp_accuracy']:.4f}",
            file=sys.stderr,
            flush=True,
        )

    def summary(
        self, timing_warmup: int, batch_size: int, resumed_at: int = 0, also_cold: tuple[int, ...] = ()
    ) -> dict:
        """Throughput and its spread over the steps after the timing warm-up (at the start and
        after a resume) and other than `also_cold`, and the final loss."""
        if not self.steps:
            return {"steps_completed": 0}
        cold = {
            *range(1, timing_warmup + 1),
            *range(resumed_at + 1, resumed_at + 1 + timing_warmup),
            *also_cold,
        }
        measured = [s for s in self.steps if s.step not in cold]
        note = None
        if not measured:
            # A run too short for its warm-up (or resumed into its last few steps) still gets
            # figures, from its cold steps, and says so rather than passing them off as timed.
            measured = self.steps
            note = (
                f"every step fell in the timing warm-up ({timing_warmup} steps, the census step, "
                "after a resume): these figures are of cold steps; give more --steps than "
                "--timing-warmup for timed ones"
            )
        rates = Spread.of([s.seq_per_s for s in measured])
        times = np.array([s.step_time_s for s in measured])
        flops = np.array([s.model_flops for s in measured], dtype=np.float64)
        tail = [s.loss for s in self.steps[-20:]]
        out = {
            "steps_completed": self.steps[-1].step,
            "steps_measured": 0 if note else len(measured),
            # Which steps the statistics left out, so that readers of the step records (steps.csv,
            # the gate's per-step tests) pick the same samples.
            "cold_steps": sorted({s.step for s in self.steps} & cold),
            "throughput_note": note,
            "throughput_seq_per_s": rates.median,
            "throughput_p10": rates.p10,
            "throughput_p90": rates.p90,
            "step_time_median_s": Spread.of(times).median,
            "step_time_cv": Spread.of(times).cv,
            "data_wait_fraction": float(sum(s.data_time_s for s in measured) / times.sum()),
            "harness_time_fraction": _harness_fraction(measured),
            "cpu_share_median": _median([s.cpu_share for s in measured if s.cpu_share is not None]),
            "model_tflops_per_s": Spread.of(flops / times).median / 1e12,
            "batch_size": batch_size,
            # The mean of the last 20 steps: one step's loss is too noisy to compare runs by.
            "final_loss": float(np.mean(tail)),
            "final_loss_steps": len(tail),
        }
        if self.evals:
            out.update(self.evals[-1].figures())
        return out

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _harness_fraction(steps: list[StepRecord]) -> float | None:
    """The share of step time that is neither waiting for data nor the model's own work."""
    timed = [s for s in steps if s.compute_time_s is not None]
    if not timed:
        return None
    own = sum(s.step_time_s - s.data_time_s - s.compute_time_s for s in timed)  # type: ignore[operator]
    return float(own / sum(s.step_time_s for s in timed))


def _median(values: list[float]) -> float | None:
    return Spread.of(values).median if values else None


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
