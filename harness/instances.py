"""`harness train --instances K`: K independent copies of a run on disjoint cores, and their sum.

As torch.backends.xeon.run_cpu does for throughput runs, the cores are cut into K equal,
disjoint sets and each instance trains on its own (its own seed, its own OUTPUT/instance-<k>/),
all started together. When all have ended, OUTPUT/metrics.jsonl and OUTPUT/result.json hold the
aggregate, so reports and gates read an instance run like any other: per step, sequences/s are
summed and losses averaged; the result's throughput is the sum of the instances' medians.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.files import write_atomic
from harness.launch import worker_environment
from harness.precision import PrecisionMode

STATUS_ORDER = ("failed", "invalid", "diverged", "interrupted", "ok")
"""An aggregate is as bad as its worst instance."""


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


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def aggregate(output: Path, k: int) -> None:
    """OUTPUT/metrics.jsonl (the steps every instance reached) and OUTPUT/result.json."""
    dirs = [output / f"instance-{i}" for i in range(k)]
    runs = [_records(d / "metrics.jsonl") for d in dirs]
    steps = [{r["step"]: r for r in run if "seq_per_s" in r} for run in runs]
    evals = [{r["step"]: r for r in run if "eval_mlm_accuracy" in r} for run in runs]
    lines = []
    for step in sorted(set.intersection(*(set(s) for s in steps))):
        rows = [s[step] for s in steps]
        lines.append(
            {
                "step": step,
                "loss": _mean([r["loss"] for r in rows]),
                "mlm_loss": _mean([r["mlm_loss"] for r in rows]),
                "nsp_loss": _mean([r["nsp_loss"] for r in rows]),
                "lr": rows[0]["lr"],
                "grad_norm": _mean([r["grad_norm"] for r in rows]),
                # the instances run side by side: their rates add up, the step takes the slowest's time
                "step_time_s": max(r["step_time_s"] for r in rows),
                "data_time_s": max(r["data_time_s"] for r in rows),
                "seq_per_s": sum(r["seq_per_s"] for r in rows),
                "model_flops": sum(r["model_flops"] for r in rows),
            }
        )
        if all(step in e for e in evals):
            lines.append(
                {
                    "step": step,
                    **{
                        key: _mean([e[step][key] for e in evals])
                        for key in evals[0][step]
                        if key.startswith("eval_")
                    },
                }
            )
    write_atomic(output / "metrics.jsonl", "".join(json.dumps(line) + "\n" for line in lines))

    results = [json.loads((d / "result.json").read_text()) for d in dirs if (d / "result.json").is_file()]
    if not results:
        return
    worst = min(
        (r["status"] for r in results), key=lambda s: STATUS_ORDER.index(s) if s in STATUS_ORDER else 0
    )
    summed = {
        key: sum(r[key] for r in results)
        for key in ("throughput_seq_per_s", "throughput_p10", "throughput_p90", "model_tflops_per_s")
        if all(r.get(key) is not None for r in results)
    }
    averaged = {
        key: _mean([r.get(key) for r in results])
        for key in (
            "final_loss",
            "eval_mlm_accuracy",
            "eval_loss",
            "eval_nsp_accuracy",
            "mfu",
            "step_time_cv",
            "data_wait_fraction",
        )
    }
    result = {
        **results[0],
        **summed,
        **averaged,
        "status": worst if len(results) == k else "failed",
        "error": next((r["error"] for r in results if r.get("error")), None)
        or (None if len(results) == k else f"{k - len(results)} of {k} instances wrote no result"),
        "instances": k,
        "instance_results": [
            {
                key: r.get(key)
                for key in ("status", "cores", "throughput_seq_per_s", "final_loss", "eval_mlm_accuracy")
            }
            for r in results
        ],
        "cold_steps": sorted(set().union(*(set(r.get("cold_steps", [])) for r in results))),
        "cores": [c for r in results for c in r.get("cores", [])],
        "threads": sum(r.get("threads", 0) for r in results),
        "throughput_note": "sum over instances of each one's median and percentiles",
    }
    write_atomic(output / "result.json", json.dumps(result, indent=2, default=str) + "\n")
    first_save = dirs[0] / "model_save"
    if first_save.is_dir() and not (output / "model_save").exists():
        # phase 2 (and compare) continue from OUTPUT/model_save: instance 0's
        (output / "model_save").symlink_to(first_save.relative_to(output))
