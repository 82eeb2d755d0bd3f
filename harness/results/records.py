"""What a run leaves behind, as types: a step, an evaluation, the run's status."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING

from harness.errors import INPUT_ERROR_EXIT
from harness.files import DISK_FULL_EXIT

if TYPE_CHECKING:  # workers import this module and never load pandas
    import pandas as pd

RESULT_FILE, METRICS_FILE = "result.json", "metrics.jsonl"
"""A run's record of itself and of its steps, in its output folder (harness.results.files)."""

LOSS_TOLERANCE = 0.02
"""Default: a precision converges like fp32 when its final loss is within this share of fp32's."""


def mode_label(precision: str, backend: str) -> str:
    """'bf16', or 'bf16+ipex' for a run on another backend than stock PyTorch."""
    return precision if backend == "stock" else f"{precision}+{backend}"


@dataclass(frozen=True)
class PlannedModes:
    """The (precision, backend) pairs a run set plans, in plan order, and the fp32 each mode's
    speed-up and loss gap are measured against."""

    pairs: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, runs: pd.DataFrame) -> PlannedModes:
        """From a table with a row per run (or per key) and its precision and backend columns."""
        return cls(tuple(dict.fromkeys(zip(runs["precision"], runs["backend"], strict=True))))

    def reference(self, precision: str, backend: str) -> tuple[str, str]:
        """fp32 on the mode's own backend where the set plans it (bf16+fused against fp32+fused:
        what the cheaper precision buys, the implementation fixed), else stock fp32; and stock fp32
        for a backend's own fp32 (what the backend buys), or itself in a set without stock fp32.
        Planned, not finished: a failed fp32+fused leaves bf16+fused without a reference rather
        than silently changing what its ratio means."""
        own, stock = ("fp32", backend), ("fp32", "stock")
        if precision != "fp32":
            return own if own in self.pairs else stock
        return stock if stock in self.pairs else own

    def band(self) -> tuple[str, str] | None:
        """The fp32 whose seeds are the band every mode is judged against: stock fp32 where the
        set has it, else the first fp32 that is its own reference (fp32+fused under compare's
        default backend)."""
        bases = [(p, b) for p, b in self.pairs if p == "fp32" and self.reference(p, b) == (p, b)]
        return bases[0] if bases else None


class Status(StrEnum):
    """How a run ended. The first five are written by the worker itself, with their exit codes;
    the others by `harness compare`, for a run that left no result of its own."""

    OK = "ok"
    DIVERGED = "diverged"
    """The loss became NaN or inf; stopped before the bad update."""
    INVALID = "invalid"
    """The kernels that ran are not those the mode promises (kernel census, oneDNN's ceiling)."""
    INTERRUPTED = "interrupted"
    """SIGINT or SIGTERM; a checkpoint of the last step was written."""
    FAILED = "failed"
    """An exception in the worker."""
    CRASHED = "crashed"
    """The worker died without a result (killed, out of memory)."""
    TIMEOUT = "timeout"
    REFUSED = "refused"
    """`harness train` refused before any work (a mode this CPU cannot run, bad input)."""
    SKIPPED = "skipped"
    """Not started: the phase-1 run it continues from did not succeed."""
    NOT_RUN = "not run"

    @property
    def exit_code(self) -> int:
        """The worker's exit code for its own statuses (1 for any other)."""
        return _EXIT_CODES.get(self, 1)

    @classmethod
    def of_exit(cls, code: int | None) -> Status:
        """How a worker that left no result of its own ended, from its exit code: interrupted
        (SIGINT), refused (a HarnessError: it refused its input before any work, its log says
        why), failed (the disk filled up), or crashed (killed, out of memory, anything else)."""
        if code == _EXIT_CODES[cls.INTERRUPTED]:
            return cls.INTERRUPTED
        if code == INPUT_ERROR_EXIT:
            return cls.REFUSED
        if code == DISK_FULL_EXIT:
            return cls.FAILED
        return cls.CRASHED


_EXIT_CODES = {Status.OK: 0, Status.DIVERGED: 3, Status.INVALID: 4, Status.INTERRUPTED: 130}


@dataclass
class StepRecord:
    """One training step, as a line of metrics.jsonl."""

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
    (harness.machine.contention); None in runs written before it was recorded."""

    @classmethod
    def from_dict(cls, record: dict) -> StepRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


@dataclass
class EvalRecord:
    """One evaluation, as a line of metrics.jsonl (it shares its step with a StepRecord)."""

    step: int
    eval_mlm_accuracy: float
    eval_loss: float
    eval_nsp_accuracy: float
    eval_examples: int

    @classmethod
    def from_dict(cls, record: dict) -> EvalRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})

    def figures(self) -> dict:
        """The eval_* figures, as result.json records the last evaluation's."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("eval_")}


def is_eval(record: dict) -> bool:
    return "eval_mlm_accuracy" in record
