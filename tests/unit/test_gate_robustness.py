"""`harness gate` on hostile input (issue 35): flags in every combination a user may give, the
documented recipes (docs/gate.md), and a crash that must never read as a regression. In process, on the
checked-in run sets (tests/fixtures/runsets/README.md)."""

import csv
import json
import shlex
import shutil
from pathlib import Path

import pytest
from harness_cli import call

from harness.errors import INTERNAL_ERROR_EXIT
from harness.gate import judge

GATE_DOC = Path(__file__).parents[2] / "docs" / "gate.md"


def checks(runsets: Path, current: str) -> dict[str, dict]:
    """The gate.json's throughput checks of `current`, by configuration."""
    report = json.loads((runsets / current / "gate.json").read_text())
    return {c["run"]: c for c in report["checks"] if c["kind"] == "throughput"}


def test_without_max_regression_the_default_judges(capsys, runsets):
    proc = call(capsys, "gate", "--baseline", runsets / "baseline", "--current", runsets / "slowed")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fp32 = checks(runsets, "slowed")["p1 fp32 bert-tiny 8x128"]
    assert not fp32["passed"] and fp32["figures"]["max_regression"] == 0.05


def test_a_per_mode_max_regression_alone_keeps_the_default_for_the_others(capsys, runsets):
    proc = call(
        capsys,
        "gate",
        "--baseline",
        runsets / "baseline",
        "--current",
        runsets / "slowed",
        "--max-regression",
        "fp32=60%",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    limits = {run: c["figures"]["max_regression"] for run, c in checks(runsets, "slowed").items()}
    assert limits == {"p1 fp32 bert-tiny 8x128": 0.6, "p1 avx-fp32 bert-tiny 8x128": 0.05}


def documented_ci_recipe() -> list[str]:
    """The gate command of docs/gate.md's CI recipe, the one that judges `runs/head`."""
    lines = [line for line in GATE_DOC.read_text().splitlines() if line.startswith("python -m harness gate")]
    (recipe,) = [line for line in lines if "runs/head" in line]
    words = shlex.split(recipe)
    assert words[:3] == ["python", "-m", "harness"]
    return words[3:]


@pytest.mark.parametrize("head, code", [("again", 0), ("slowed", 1)])
def test_the_documented_ci_recipe_runs_as_written(capsys, runsets, head, code):
    """Its flags exactly, its run sets the fixtures: base-1 and base-2 an A/A pair, head one of them
    again (passes) or slowed (the regression is caught)."""
    shutil.copytree(runsets / head, runsets / "head")
    folders = {"runs/base-1": "baseline", "runs/base-2": "again", "runs/head": "head"}
    args = [str(runsets / folders[w]) if w.startswith("runs/") else w for w in documented_ci_recipe()]
    proc = call(capsys, *args)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert (runsets / "head" / "gate.json").is_file()


def test_a_crash_is_no_verdict(capsys, runsets, monkeypatch):
    """An exception the gate did not foresee exits 70, never 1 ("a check failed")."""

    def crash(*_):
        raise TypeError("a bug")

    monkeypatch.setattr(judge, "run_checks", crash)
    proc = call(capsys, "gate", "--baseline", runsets / "baseline", "--current", runsets / "again")
    assert proc.returncode == INTERNAL_ERROR_EXIT != judge.EXIT_FAILED
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("harness: internal error in `gate`") and "no verdict" in last
    assert "TypeError: a bug" in proc.stderr  # the traceback, for the bug report


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--max-regression", "bf16="],
            "--max-regression bf16=: expected a share such as 5% or 0.05, or MODE=SHARE",
        ),
        (
            ["--max-regression", "=5%"],
            "--max-regression =5%: expected a share such as 5% or 0.05, or MODE=SHARE",
        ),
        (["--max-regression", "bf16=8%=9"], "--max-regression bf16=8%=9: expected a share such as 5%"),
        (["--max-regression", "bf16=150%"], "--max-regression bf16=150%: expected a share in [0%, 100%)"),
        (["--max-regression", "nan"], "--max-regression nan: expected a share in [0%, 100%)"),
        (["--min-speedup", "bf16/fp32="], "--min-speedup bf16/fp32=: expected MODE/MODE=FACTOR"),
        (
            ["--min-speedup", "bf16/fp32=nan"],
            "--min-speedup bf16/fp32=nan: expected MODE/MODE=FACTOR with FACTOR a",
        ),
        (
            ["--min-speedup", "bf16/fp32=inf"],
            "--min-speedup bf16/fp32=inf: expected MODE/MODE=FACTOR with FACTOR a",
        ),
        (["--min-speedup", "fp32/fp32=2"], "--min-speedup fp32/fp32=2: expected two different modes"),
        (["--alpha", "1.5"], "--alpha 1.5: expected a p-value in (0, 1)"),
        (["--loss-tolerance", "nan"], "--loss-tolerance must be a finite number, got nan"),
        (["--accuracy-tolerance", "-0.1"], "--accuracy-tolerance -0.1: expected a share in [0, 1)"),
    ],
)
def test_a_bad_threshold_is_named_whole(capsys, runsets, args, message):
    proc = call(capsys, "gate", "--baseline", runsets / "baseline", "--current", runsets / "again", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"harness: {message}"), proc.stderr
    assert not (runsets / "again" / "gate.json").exists()


def set_field(table: Path, row: int, column: str, value: str) -> None:
    """Overwrite one field of a harness table; `row` counts the header as row 1."""
    rows = list(csv.reader(table.open()))
    rows[row - 1][rows[0].index(column)] = value
    with table.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def repeat_row(table: Path, row: int) -> None:
    lines = table.read_text().splitlines(keepends=True)
    table.write_text("".join([*lines, lines[row - 1]]))


RATE = "expected a throughput in (0, 1e+06] sequences/s, or empty"


@pytest.mark.parametrize(
    "side, table, edit, message",
    [
        ("again", "runs.csv", ("throughput_seq_per_s", "inf"), f"row 2: throughput_seq_per_s inf: {RATE}"),
        (
            "again",
            "runs.csv",
            ("throughput_seq_per_s", "1e308"),
            f"row 2: throughput_seq_per_s 1e+308: {RATE}",
        ),
        ("again", "runs.csv", ("throughput_seq_per_s", "-50"), f"row 2: throughput_seq_per_s -50.0: {RATE}"),
        ("again", "runs.csv", ("throughput_seq_per_s", "0"), f"row 2: throughput_seq_per_s 0.0: {RATE}"),
        ("again", "runs.csv", None, "row 4: run_id p1-fp32-r0 listed twice"),
        ("again", "runs.csv", ("final_loss", "-1"), "row 2: final_loss -1.0: expected a loss >= 0, or empty"),
        (
            "again",
            "runs.csv",
            ("eval_mlm_accuracy", "5"),
            "row 2: eval_mlm_accuracy 5.0: expected an accuracy",
        ),
        ("baseline", "runs.csv", ("throughput_seq_per_s", "inf"), f"row 2: throughput_seq_per_s inf: {RATE}"),
        ("baseline", "runs.csv", None, "row 4: run_id p1-fp32-r0 listed twice"),
        ("again", "steps.csv", ("seq_per_s", "inf"), f"row 2: seq_per_s inf: {RATE}"),
        ("baseline", "steps.csv", ("seq_per_s", "-3"), f"row 2: seq_per_s -3.0: {RATE}"),
        ("again", "steps.csv", None, "run_id p1-fp32-r0, step 1 listed twice"),
    ],
)
def test_a_figure_no_run_could_measure_is_refused(capsys, runsets, side, table, edit, message):
    """On either side, in runs.csv or in steps.csv: one line naming the file and row, exit 2,
    nothing judged or written."""
    path = runsets / side / table
    if edit is None:  # the first run, or its first step, listed again at the end
        repeat_row(path, 2)
    else:
        set_field(path, 2, *edit)
    proc = call(
        capsys,
        "gate",
        "--baseline",
        runsets / "baseline" / "runs.csv",
        "--current",
        runsets / "again" / "runs.csv",
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"harness: {path}") and message in lines[0], proc.stderr
    assert not (runsets / "again" / "gate.json").exists()


def test_a_compare_folder_names_the_run_file(capsys, runsets):
    """Given a compare folder, the gate reads each run's result.json: the message names that file."""
    result = runsets / "again" / "runs" / "p1-fp32-r0" / "result.json"
    data = json.loads(result.read_text())
    result.write_text(json.dumps({**data, "throughput_seq_per_s": -50}))
    proc = call(capsys, "gate", "--baseline", runsets / "baseline", "--current", runsets / "again")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == f"harness: {result}: throughput_seq_per_s -50.0: {RATE}"


def test_a_run_set_with_absurd_figures_is_not_saved(capsys, runsets):
    set_field(runsets / "again" / "runs.csv", 3, "throughput_seq_per_s", "1e308")
    saved = runsets / "saved"
    proc = call(
        capsys, "gate", "--current", runsets / "again", "--save-baseline", "main", "--baselines-dir", saved
    )
    assert proc.returncode == 2 and "row 3: throughput_seq_per_s 1e+308" in proc.stderr, proc.stderr
    assert not saved.exists()


def test_save_baseline_never_replaces_a_folder_it_did_not_save(capsys, runsets):
    mine = runsets / "saved" / "main"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine\n")
    proc = call(
        capsys,
        "gate",
        "--current",
        runsets / "again",
        "--save-baseline",
        "main",
        "--baselines-dir",
        runsets / "saved",
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (
        f"harness: --save-baseline main: {mine} exists and is no saved baseline (no baseline.json); "
        "left as it is: choose another name or --baselines-dir"
    )
    assert [p.name for p in (runsets / "saved").iterdir()] == ["main"]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_save_replaces_its_own_baseline_and_lists_no_staging_folder(capsys, runsets):
    saved = runsets / "saved"
    for source in ("baseline", "again"):
        proc = call(
            capsys, "gate", "--current", runsets / source, "--save-baseline", "main", "--baselines-dir", saved
        )
        assert proc.returncode == 0, proc.stderr
    assert (saved / "main" / "runs.csv").read_text() == (runsets / "again" / "runs.csv").read_text()
    (saved / ".main.x1y2.tmp").mkdir()  # as a save under way leaves it
    proc = call(
        capsys, "gate", "--baseline", "nightly", "--current", runsets / "again", "--baselines-dir", saved
    )
    assert proc.returncode == 2 and proc.stderr.strip().endswith(f"in {saved} (saved: main)"), proc.stderr
