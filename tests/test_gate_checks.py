"""The gate's checks in process, on run sets built in memory: nothing judged is left out, and a
table cut short is refused instead of read as data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.gate.checks import GateConfig, throughput
from harness.reports.runsets import RunSet
from harness.reports.tables import RUN_COLUMNS, STEP_COLUMNS, read_runs, read_steps


def _runset(name: str, speeds: dict[str, float]) -> RunSet:
    """One ok phase-1 run per precision, 30 timed steps at about `speeds[precision]` seq/s."""
    rng = np.random.default_rng(len(name))
    runs, steps = [], []
    for precision, speed in speeds.items():
        run_id = f"p1-{precision}-r0"
        runs.append(
            {
                "run_id": run_id,
                "phase": 1,
                "precision": precision,
                "backend": "stock",
                "repeat": 0,
                "status": "ok",
                "model": "bert-tiny",
                "seq_len": 128,
                "batch_size": 8,
                "valid": True,
            }
        )
        for step in range(1, 31):
            steps.append(
                {
                    "run_id": run_id,
                    "phase": 1,
                    "precision": precision,
                    "repeat": 0,
                    "step": step,
                    "seq_per_s": speed * (1 + 0.01 * rng.standard_normal()),
                    "timed": True,
                }
            )
    return RunSet(
        Path(name),
        pd.DataFrame(runs, columns=list(RUN_COLUMNS)).astype(RUN_COLUMNS),
        pd.DataFrame(steps, columns=list(STEP_COLUMNS)).astype(STEP_COLUMNS),
        {},
    )


def test_a_configuration_the_baseline_lacks_fails_unless_allowed():
    baseline = _runset("base", {"fp32": 50.0})
    # bf16 is half as fast as anything could be, but the baseline has no bf16 to hold it to
    current = _runset("cur", {"fp32": 50.0, "bf16": 25.0})
    checks = {c.run: c for c in throughput(baseline, current, GateConfig())}
    assert checks["p1 fp32 bert-tiny 8x128"].passed
    missing = checks["p1 bf16 bert-tiny 8x128"]
    assert not missing.passed
    assert missing.message == (
        "not in the baseline run set: its throughput is not judged; --allow-missing lets it pass"
    )
    allowed = {c.run: c for c in throughput(baseline, current, GateConfig(allow_missing=True))}
    assert allowed["p1 bf16 bert-tiny 8x128"].passed
    assert "(--allow-missing)" in allowed["p1 bf16 bert-tiny 8x128"].message
    # and the other way round: a configuration the current set lacks fails too
    (gone,) = [c for c in throughput(current, baseline, GateConfig()) if "bf16" in c.run]
    assert not gone.passed and gone.message == "not in the current run set"


def test_a_table_cut_mid_row_is_refused_naming_it(tmp_path):
    table = _runset("t", {"fp32": 50.0})
    runs_csv, steps_csv = tmp_path / "runs.csv", tmp_path / "steps.csv"
    runs_csv.write_text(table.runs.to_csv(index=False))
    steps_csv.write_text(table.steps.to_csv(index=False))
    assert len(read_runs(runs_csv)) == 1 and len(read_steps(steps_csv)) == 30  # whole tables read
    text = steps_csv.read_text()
    steps_csv.write_text(text[: len(text) - 25])  # a write cut short inside the last row
    with pytest.raises(HarnessError, match=r"steps\.csv: its last row is cut short \(no line end\)"):
        read_steps(steps_csv)
    lines = text.splitlines(keepends=True)
    steps_csv.write_text("".join(lines[:5]) + lines[5].split(",", 3)[0] + "\n" + "".join(lines[6:]))
    with pytest.raises(HarnessError, match=r"steps\.csv: row 6 has 1 fields, the header 15"):
        read_steps(steps_csv)


def test_a_contended_run_sets_throughput_is_not_judged():
    baseline = _runset("base", {"fp32": 50.0})
    current = _runset("cur", {"fp32": 25.0})  # half as fast: a regression, were the cores its own
    current.runs["contended"] = pd.array([True], dtype="boolean")
    (check,) = throughput(baseline, current, GateConfig())
    assert check.passed and check.figures == {"contended": True}
    assert check.message == "not judged: the current run set's runs shared their cores (contended)"
    current.runs["contended"] = pd.array([False], dtype="boolean")
    (check,) = throughput(baseline, current, GateConfig())
    assert not check.passed and "REGRESSION" in check.message
