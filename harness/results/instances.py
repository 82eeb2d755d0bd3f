"""The run that K instances make together (`harness train --instances K`), written as one run.

The instances run side by side on disjoint cores: per step their rates add up and the step takes
the slowest instance's time; losses and evaluations are averaged. The aggregate's throughput
statistics are those of the summed per-step rates, computed as for any run, so that every page
shows the same median and spread for it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.results.files import read_metrics, read_result, write_metrics, write_result
from harness.results.records import Status
from harness.results.stats import Spread

WORST_FIRST = (Status.FAILED, Status.INVALID, Status.DIVERGED, Status.INTERRUPTED, Status.OK)
"""An aggregate is as bad as its worst instance."""


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _steps(dirs: list[Path]) -> tuple[list[dict], list[float]]:
    """The aggregate's metrics lines (the steps every instance reached) and its summed rates."""
    runs = [read_metrics(d) for d in dirs]
    steps = [{s.step: s for s in run_steps} for run_steps, _ in runs]
    evals = [{e.step: e for e in run_evals} for _, run_evals in runs]
    lines, rates = [], {}
    for step in sorted(set.intersection(*(set(s) for s in steps))):
        rows = [s[step] for s in steps]
        rates[step] = sum(r.seq_per_s for r in rows)
        lines.append(
            {
                "step": step,
                "loss": _mean([r.loss for r in rows]),
                "mlm_loss": _mean([r.mlm_loss for r in rows]),
                "nsp_loss": _mean([r.nsp_loss for r in rows]),
                "lr": rows[0].lr,
                "grad_norm": _mean([r.grad_norm for r in rows]),
                "step_time_s": max(r.step_time_s for r in rows),
                "data_time_s": max(r.data_time_s for r in rows),
                "seq_per_s": rates[step],
                "model_flops": sum(r.model_flops for r in rows),
                "cpu_share": _mean([r.cpu_share for r in rows]),
            }
        )
        if all(step in e for e in evals):
            figures = [e[step].figures() for e in evals]
            lines.append({"step": step, **{k: _mean([f[k] for f in figures]) for k in figures[0]}})
    return lines, rates


def aggregate(output: Path, k: int) -> None:
    """OUTPUT's metrics and result from those of OUTPUT/instance-0 .. instance-(k-1)."""
    dirs = [output / f"instance-{i}" for i in range(k)]
    lines, rates = _steps(dirs)
    write_metrics(output, lines)
    results = [r for r in map(read_result, dirs) if r is not None]
    if not results:
        return
    worst = min((r.status for r in results), key=WORST_FIRST.index)
    cold = sorted(set().union(*(set(r.cold_steps) for r in results)))
    spread = Spread.of([rate for step, rate in rates.items() if step not in cold])
    timed_steps = [line for line in lines if "seq_per_s" in line and line["step"] not in cold]
    available = [r.cpu_available for r in results if r.cpu_available is not None]
    complete = len(results) == k
    result = replace(
        results[0],
        **{
            key: _mean([getattr(r, key) for r in results])
            for key in ("final_loss", "eval_mlm_accuracy", "eval_loss", "eval_nsp_accuracy", "mfu")
        },
        throughput_seq_per_s=spread.median,
        throughput_p10=spread.p10,
        throughput_p90=spread.p90,
        steps_measured=spread.n,
        step_time_cv=Spread.of([line["step_time_s"] for line in timed_steps]).cv,
        model_tflops_per_s=sum(r.model_tflops_per_s or 0.0 for r in results),
        contended=any(r.contended for r in results),
        cpu_available=min(available) if available else None,
        status=worst if complete else Status.FAILED,
        error=next((r.error for r in results if r.error), None)
        or (None if complete else f"{k - len(results)} of {k} instances wrote no result"),
        instances=k,
        instance_results=[
            {
                key: getattr(r, key)
                for key in ("status", "cores", "throughput_seq_per_s", "final_loss", "eval_mlm_accuracy")
            }
            for r in results
        ],
        cold_steps=cold,
        cores=[c for r in results for c in r.cores],
        threads=sum(r.threads for r in results),
        throughput_note="median and percentiles of the per-step sum of the instances' rates",
    )
    write_result(output, result)
    first_save = dirs[0] / "model_save"
    if first_save.is_dir() and not (output / "model_save").exists():
        # phase 2 (and compare) continue from OUTPUT/model_save: instance 0's
        (output / "model_save").symlink_to(first_save.relative_to(output))
