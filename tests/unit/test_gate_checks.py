"""The gate's checks in process, on run sets built in memory: nothing judged is left out, and a
table cut short is refused instead of read as data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.gate.checks import throughput
from harness.gate.config import GateConfig
from harness.results.runsets import RunSet, merge_runsets
from harness.results.tables import RUN_COLUMNS, STEP_COLUMNS, read_runs, read_steps


def _runset(name: str, speeds: dict[str, float | list[float]]) -> RunSet:
    """Ok phase-1 runs per precision, a run per speed given (seq/s), each of 30 timed steps."""
    rng = np.random.default_rng(len(name))
    runs, steps = [], []
    for precision, given in speeds.items():
        for repeat, speed in enumerate(given if isinstance(given, list) else [given]):
            run_id = f"p1-{precision}-r{repeat}"
            rates = speed * (1 + 0.01 * rng.standard_normal(30))
            runs.append(
                {
                    "run_id": run_id,
                    "phase": 1,
                    "precision": precision,
                    "backend": "stock",
                    "repeat": repeat,
                    "status": "ok",
                    "model": "bert-tiny",
                    "seq_len": 128,
                    "batch_size": 8,
                    "valid": True,
                    "throughput_seq_per_s": float(np.median(rates)),
                }
            )
            for step, rate in enumerate(rates, start=1):
                steps.append(
                    {
                        "run_id": run_id,
                        "phase": 1,
                        "precision": precision,
                        "repeat": repeat,
                        "step": step,
                        "seq_per_s": rate,
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


# Five runs a side whose medians scatter by about 3%, as runs of one machine do between processes.
BASE = [50.0, 51.5, 49.0, 50.8, 49.6]


def test_runs_are_the_unit_a_real_slowdown_fails_and_noise_passes():
    baseline = _runset("base", {"fp32": BASE})
    (same,) = throughput(baseline, _runset("again", {"fp32": BASE[::-1]}), GateConfig())
    assert same.passed and "runs 5/5" in same.message and "p=" in same.message
    (slow,) = throughput(baseline, _runset("slow", {"fp32": [v * 0.9 for v in BASE]}), GateConfig())
    assert not slow.passed and "REGRESSION" in slow.message
    assert slow.figures["runs"] == [5, 5] and slow.figures["p_value"] < 0.01
    assert slow.figures["change"] == pytest.approx(-0.1, abs=0.01)
    # one slow run among five is not a significant drop, however far below the others
    (outlier,) = throughput(baseline, _runset("one", {"fp32": [*BASE[:4], 30.0]}), GateConfig())
    assert outlier.passed


def test_too_few_runs_give_no_p_value_and_the_threshold_alone_judges():
    baseline = _runset("base", {"fp32": BASE[:2]})
    (check,) = throughput(baseline, _runset("cur", {"fp32": [v * 0.9 for v in BASE[:2]]}), GateConfig())
    assert "p=" not in check.message and "no p-value under 3 runs a side" in check.message
    assert "smallest detectable change" in check.message and "between runs" in check.message
    assert not check.passed  # -10% against a 5% threshold
    # three a side cannot reach alpha 0.01 (the smallest p is 1/20): said, and judged the same way
    three = _runset("base3", {"fp32": BASE[:3]})
    (check,) = throughput(three, _runset("cur3", {"fp32": BASE[:3]}), GateConfig())
    assert check.passed and "3/3 runs cannot give p<0.01 (smallest 0.05)" in check.message


def test_run_sets_interleaved_in_time_are_judged_as_one():
    halves = [_runset(f"base-{i}", {"fp32": BASE[i::2]}) for i in (0, 1)]
    for i, s in enumerate(halves):
        s.path = Path(f"/runs/base-{i}")
    merged = merge_runsets("--baseline", halves)
    assert len(merged.runs) == 5 and merged.runs["run_id"].is_unique
    (check,) = throughput(merged, _runset("cur", {"fp32": [v * 0.9 for v in BASE]}), GateConfig())
    assert check.figures["runs"] == [5, 5] and not check.passed
    halves[1].machine = {"cpu_model": "Other CPU"}
    halves[0].machine = {"cpu_model": "AMD EPYC"}
    with pytest.raises(HarnessError, match=r"--baseline /runs/base-1: measured on another machine"):
        merge_runsets("--baseline", halves)
