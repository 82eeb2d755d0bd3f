"""The run sets the gate judges, refused where a figure cannot have been measured.

A hand-edited or corrupted table would otherwise be judged: a throughput of inf gave a "nan%"
change that passed, -50 a regression, a run listed twice counted as two runs. The rule, on both
sides and on every row (a failed run's figures included):

- a run's median sequences/s (runs.csv's throughput_seq_per_s) and a step's (steps.csv's
  seq_per_s) are finite, > 0 and at most MAX_SEQ_PER_S;
- a final loss is >= 0 (a cross-entropy; inf or empty: a diverged run), an eval MLM accuracy in
  [0, 1];
- a run_id appears once in runs.csv, a (run_id, step) once in steps.csv.

An empty figure is one not measured, which the checks already handle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.results.files import plan_exists
from harness.results.runsets import RunSet, load_runset

MAX_SEQ_PER_S = 1e6
"""Above any CPU's reach: bert-tiny, the smallest model the harness ships, costs about 0.8 GFLOP
a 128-token training sequence (harness.models.flops), so a million a second would take
0.8 PFLOP/s, several times the bf16 peak of a two-socket, 112-core AMX node."""

RATE = f"a throughput in (0, {MAX_SEQ_PER_S:.0e}] sequences/s"

Rule = tuple[str, Callable[[pd.Series], pd.Series], str]

RUN_RULES: list[Rule] = [
    ("throughput_seq_per_s", lambda x: (x > 0) & (x <= MAX_SEQ_PER_S), RATE),
    ("final_loss", lambda x: x >= 0, "a loss >= 0"),
    ("eval_mlm_accuracy", lambda x: (x >= 0) & (x <= 1), "an accuracy in [0, 1]"),
]
STEP_RULES: list[Rule] = [("seq_per_s", lambda x: (x > 0) & (x <= MAX_SEQ_PER_S), RATE)]


def load_judged(path: Path) -> RunSet:
    """load_runset, refusing a run set whose figures no run could have measured: one line naming
    the file, the row and what was expected."""
    runset = load_runset(path)
    folder = runset.path
    if path.is_dir() and plan_exists(path):  # load_runset recomputed the tables from each run's files

        def listed_at(_: int) -> str:
            return str(folder / "plan.json")

        def run_at(i: int) -> str:
            return str(folder / "runs" / str(runset.runs["run_id"].iloc[i]) / "result.json")

        def step_at(i: int) -> str:
            row = runset.steps.iloc[i]
            return f"{folder / 'runs' / str(row['run_id']) / 'metrics.jsonl'} step {row['step']}"

    else:

        def run_at(i: int) -> str:
            return f"{folder / 'runs.csv'} row {i + 2}"  # row 1 is the header

        def step_at(i: int) -> str:
            return f"{folder / 'steps.csv'} row {i + 2}"

        listed_at = run_at
    _once(runset.runs, ["run_id"], listed_at)
    _once(runset.steps, ["run_id", "step"], step_at)
    _within(runset.runs, RUN_RULES, run_at)
    _within(runset.steps, STEP_RULES, step_at)
    return runset


def _once(table: pd.DataFrame, key: list[str], at: Callable[[int], str]) -> None:
    again = np.flatnonzero(table.duplicated(subset=key).to_numpy(dtype=bool))
    if len(again):
        i = again[0]
        what = ", ".join(f"{k} {table[k].iloc[i]}" for k in key)
        raise HarnessError(f"{at(i)}: {what} listed twice; a run and each of its steps count once")


def _within(table: pd.DataFrame, rules: list[Rule], at: Callable[[int], str]) -> None:
    for column, ok, expected in rules:
        values = table[column]
        bad = np.flatnonzero((values.notna() & ~ok(values)).to_numpy(dtype=bool))
        if len(bad):
            raise HarnessError(f"{at(bad[0])}: {column} {values.iloc[bad[0]]}: expected {expected}, or empty")
