"""Where a step's time goes: the census step (harness.train.hooks.KernelCensus) split into its
GEMMs by library and ISA, attention's batched GEMMs, the rest of forward and backward, the
optimizer, the wait for data and the harness's own work; and beside it the step's speed of light.

The GEMMs' times are the libraries' own (their verbose logs time every call); the other parts come
from the step's clock (harness.train.hooks.StepClock): forward and backward less the GEMMs in
them, the optimizer, the data wait, and what is left of the step's wall time. The census step runs
with verbose logging on, so it is a little slower than a timed step: its shares are what compares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TimeSplit:
    step_s: float
    """The census step's wall time."""
    gemm_s: dict[str, float]
    """GEMM seconds by library and ISA (`mkl:avx512`, `onednn:avx10_1_512_amx`), attention's
    batched GEMMs left out."""
    attention_gemm_s: float
    """Attention's batched GEMMs (scores and context), forward and backward."""
    other_compute_s: float
    """Forward and backward less their GEMMs: element-wise work, norms, softmax, casts; and
    GEMMs neither library reports (PyTorch's own)."""
    optimizer_s: float
    data_wait_s: float
    harness_s: float
    """The rest of the step: the losses read back, the learning rate set, the ranks' reductions,
    the census recording itself."""

    @classmethod
    def of_step(
        cls,
        gemms: tuple[dict[str, float], float],
        step_s: float,
        data_s: float,
        forward_backward_s: float,
        optimizer_s: float,
    ) -> TimeSplit:
        """From the census's GEMM seconds (harness.precision.census.Census.gemm_seconds) and the
        step clock's parts."""
        by_unit, attention = gemms
        return cls(
            step_s=step_s,
            gemm_s=by_unit,
            attention_gemm_s=attention,
            other_compute_s=forward_backward_s - sum(by_unit.values()) - attention,
            optimizer_s=optimizer_s,
            data_wait_s=data_s,
            harness_s=step_s - data_s - forward_backward_s - optimizer_s,
        )

    @classmethod
    def from_dict(cls, data: dict) -> TimeSplit:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_columns(cls, row: dict) -> TimeSplit | None:
        """The split its runs.csv columns hold, or None for a run that recorded none."""
        step = row.get("census_step_s")
        if step is None or math.isnan(step):
            return None
        text = row.get("gemm_by_isa")
        units = [item.rsplit(" ", 1) for item in (text if isinstance(text, str) else "").split("; ") if item]
        return cls(
            step_s=float(step),
            gemm_s={unit: float(s) for unit, s in units},
            **{f.name: float(row[f.name]) for f in fields(cls) if f.name not in ("step_s", "gemm_s")},
        )

    def parts(self) -> dict[str, float]:
        """Every part's seconds, in the order the report draws them: the GEMMs first."""
        return {
            **{f"GEMM {unit}": s for unit, s in self.gemm_s.items()},
            "attention's batched GEMMs": self.attention_gemm_s,
            "rest of forward and backward": self.other_compute_s,
            "optimizer": self.optimizer_s,
            "data wait": self.data_wait_s,
            "harness": self.harness_s,
        }

    def columns(self) -> dict[str, object]:
        """Its runs.csv columns (harness.results.tables.SPLIT_COLUMNS)."""
        return {
            "census_step_s": self.step_s,
            "gemm_s": sum(self.gemm_s.values()),
            "gemm_by_isa": "; ".join(f"{unit} {s:.6f}" for unit, s in self.gemm_s.items()),
            "attention_gemm_s": self.attention_gemm_s,
            "other_compute_s": self.other_compute_s,
            "optimizer_s": self.optimizer_s,
            "data_wait_s": self.data_wait_s,
            "harness_s": self.harness_s,
        }


def speed_of_light(
    gemm_flops: float, peak_gflops: float, optimizer_bytes: float, stream_gbps: float
) -> float:
    """The seconds a step takes at the machine's limits: its GEMM FLOPs at the matmul peak, plus
    the optimizer's bytes at the stream bandwidth (harness roofline measures both). The rest of
    a step (element-wise work, attention's softmax) is left out: at the limit it would overlap."""
    return gemm_flops / (peak_gflops * 1e9) + optimizer_bytes / (stream_gbps * 1e9)
