"""The metrics processor: the training loop hands it numbers; it writes, prints and summarises.

Every step becomes a line of OUTPUT/metrics.jsonl, flushed at once, so a worker that dies loses
nothing already measured. Progress goes to stderr at a fixed step interval.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from harness.files import write_atomic


@dataclass
class StepMetrics:
    step: int
    loss: float
    mlm_loss: float
    nsp_loss: float
    lr: float
    grad_norm: float
    step_time_s: float
    """Wall time of the whole step: waiting for the batch, forward, backward, optimizer."""
    data_time_s: float
    """Part of step_time_s spent waiting for the batch."""
    seq_per_s: float
    model_flops: int
    """Analytic FLOPs of this step (forward + backward)."""
    compute_time_s: float | None = None
    """Part of step_time_s in the model's forward, backward and optimizer step. What is left after
    it and data_time_s is the harness's own work in the step (batch conversion, loss checks,
    metrics); None in runs written before it was recorded."""
    cpu_share: float | None = None
    """CPU time the process got in the step (all threads) over step_time_s x threads
    (harness.contention); None in runs written before it was recorded."""


class MetricsProcessor:
    def __init__(self, path: Path | None, total_steps: int, log_every: int, resume_from: int = 0) -> None:
        """path None: a rank other than 0, which keeps its numbers to itself (no file, no output)."""
        self.path, self.total_steps, self.log_every = path, total_steps, log_every
        self.steps: list[StepMetrics] = []
        self.evals: list[dict] = []
        self._file = None
        if path is not None:
            if resume_from:
                self._truncate(resume_from)
            else:
                path.write_text("")
            self._file = path.open("a")
        self._started = time.perf_counter()
        self._first_step = resume_from

    def _truncate(self, last_step: int) -> None:
        """Keep the lines up to the checkpoint's step: the resumed run rewrites what came after."""
        assert self.path is not None
        kept = []
        for line in self.path.read_text().splitlines() if self.path.exists() else []:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the line a crash cut short
                continue
            if record["step"] > last_step:
                continue
            kept.append(line)
            if "eval_mlm_accuracy" in record:
                self.evals.append(record)
            else:
                self.steps.append(StepMetrics(**record))
        write_atomic(self.path, "".join(line + "\n" for line in kept))

    def _write(self, record: dict) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def step(self, m: StepMetrics) -> None:
        self.steps.append(m)
        self._write(asdict(m))
        if self._file is not None and (m.step % self.log_every == 0 or m.step == self.total_steps):
            done = m.step - self._first_step
            elapsed = time.perf_counter() - self._started
            eta = elapsed / done * (self.total_steps - m.step) if done else 0.0
            recent = self.steps[-self.log_every :]
            wait = sum(s.data_time_s for s in recent) / sum(s.step_time_s for s in recent)
            print(
                f"step {m.step}/{self.total_steps} | loss {m.loss:.4f} "
                f"(mlm {m.mlm_loss:.3f}, nsp {m.nsp_loss:.3f}) | lr {m.lr:.2e} | "
                f"{statistics.median(s.seq_per_s for s in recent):.2f} seq/s | "
                f"data wait {wait:.1%} | "
                f"ETA {clock(eta)}",
                file=sys.stderr,
                flush=True,
            )

    def evaluation(self, step: int, results: dict) -> None:
        record = {"step": step, **results}
        self.evals.append(record)
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
        measured = [s for s in self.steps if s.step not in cold] or self.steps
        rates = np.array([s.seq_per_s for s in measured])
        times = np.array([s.step_time_s for s in measured])
        flops = np.array([s.model_flops for s in measured], dtype=np.float64)
        tail = [s.loss for s in self.steps[-20:]]
        out = {
            "steps_completed": self.steps[-1].step,
            "steps_measured": len(measured),
            # Which steps the statistics left out, so that readers of metrics.jsonl (steps.csv,
            # the gate's per-step tests) pick the same samples.
            "cold_steps": sorted({s.step for s in self.steps} - {s.step for s in measured}),
            "throughput_seq_per_s": float(np.median(rates)),
            "throughput_p10": float(np.percentile(rates, 10)),
            "throughput_p90": float(np.percentile(rates, 90)),
            "step_time_median_s": float(np.median(times)),
            "step_time_cv": float(times.std() / times.mean()) if len(times) > 1 else 0.0,
            "data_wait_fraction": float(sum(s.data_time_s for s in measured) / times.sum()),
            "harness_time_fraction": _harness_fraction(measured),
            "cpu_share_median": _median([s.cpu_share for s in measured if s.cpu_share is not None]),
            "model_tflops_per_s": float(np.median(flops / times) / 1e12),
            "batch_size": batch_size,
            # The mean of the last 20 steps: one step's loss is too noisy to compare runs by.
            "final_loss": float(np.mean(tail)),
            "final_loss_steps": len(tail),
        }
        if self.evals:
            out.update({k: v for k, v in self.evals[-1].items() if k.startswith("eval_")})
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _harness_fraction(steps: list[StepMetrics]) -> float | None:
    """The share of step time that is neither waiting for data nor the model's own work."""
    timed = [s for s in steps if s.compute_time_s is not None]
    if not timed:
        return None
    own = sum(s.step_time_s - s.data_time_s - s.compute_time_s for s in timed)  # type: ignore[operator]
    return float(own / sum(s.step_time_s for s in timed))


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
