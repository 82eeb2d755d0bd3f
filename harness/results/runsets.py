"""A run set (one `harness compare` output) loaded for comparison with others: the one loader.

A run set is found from its folder (plan.json, or runs.csv and steps.csv as a saved baseline keeps
them) or from its runs.csv. Runs of two sets are matched by their configuration key. A key's
throughput is the median of its runs' medians (the run is the unit, harness.results.stats); its
p10..p90 is the spread of the timed steps inside the runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.machine.platform import fingerprint
from harness.results.files import plan_exists, read_machine
from harness.results.records import Status, mode_label
from harness.results.stats import Ratio, Spread, between_run_cv, ratio
from harness.results.tables import read_runs, read_steps, runs_table, steps_table

KEY = ["phase", "precision", "backend", "model", "batch_size", "seq_len"]
"""What makes two runs comparable: the same phase, mode, backend, model and shapes."""


def key_label(row) -> str:  # a pandas row or a dict with the KEY fields
    batch, seq = (None if pd.isna(row[k]) else int(row[k]) for k in ("batch_size", "seq_len"))
    # a refused or skipped run never read its data: its sequence length is unknown
    shape = f"{batch}x{seq}" if seq is not None else f"batch {batch}" if batch is not None else "not run"
    return f"p{row['phase']} {mode_label(row['precision'], row['backend'])} {row['model']} {shape}"


@dataclass
class RunSet:
    path: Path
    runs: pd.DataFrame
    steps: pd.DataFrame
    machine: dict
    label: str = ""
    """How pages name the set: its folder's name, or more of its path where names collide."""

    @property
    def started_at(self) -> str:
        times = self.runs["started_at"].dropna()
        return str(times.min()) if len(times) else ""

    @property
    def commit(self) -> str | None:
        return self.machine.get("versions", {}).get("harness_commit")


def name_sets(sets: list[RunSet]) -> list[RunSet]:
    """Label each set by its folder name, widened to parent/name where two sets share a name."""
    for depth in (1, 2, 3):
        labels = ["/".join(s.path.resolve().parts[-depth:]) for s in sets]
        if len(set(labels)) == len(labels):
            break
    for s, label in zip(sets, labels, strict=True):
        s.label = label
    return sets


def mismatches(baseline: dict, current: dict) -> list[str]:
    """'field: baseline -> current' for each fingerprint field recorded in both that differs."""
    a, b = fingerprint(baseline), fingerprint(current)
    return [f"{k}: {a[k]} -> {b[k]}" for k in a if a[k] is not None and b[k] is not None and a[k] != b[k]]


def merge_runsets(flag: str, sets: list[RunSet]) -> RunSet:
    """Several run sets of one machine as one, their run ids prefixed by their folder: a baseline
    or current measured as compares interleaved in time with the other side's."""
    if len(sets) == 1:
        return sets[0]
    for s in sets[1:]:
        differences = mismatches(sets[0].machine, s.machine)
        if differences:
            raise HarnessError(
                f"{flag} {s.path}: measured on another machine or build than {sets[0].path} "
                f"({'; '.join(differences)}); one run set needs one machine"
            )
    name_sets(sets)
    runs, steps = [], []
    for s in sets:
        runs.append(s.runs.assign(run_id=s.label + "/" + s.runs["run_id"]))
        steps.append(s.steps.assign(run_id=s.label + "/" + s.steps["run_id"]))
    return RunSet(
        sets[0].path.parent,
        pd.concat(runs, ignore_index=True),
        pd.concat(steps, ignore_index=True),
        sets[0].machine,
    )


def is_runset(path: Path) -> bool:
    return plan_exists(path) or (path / "runs.csv").is_file()


def load_runset(path: Path) -> RunSet:
    """From a compare folder (tables recomputed from its runs) or a runs.csv (tables as saved)."""
    if path.is_file():
        if path.name != "runs.csv":
            raise HarnessError(f"{path}: expected a compare output folder or its runs.csv")
        folder = path.parent
    elif path.is_dir():
        folder = path
    else:
        raise HarnessError(f"{path}: no such folder or runs.csv")
    machine = read_machine(folder)
    try:
        if plan_exists(folder) and path.is_dir():
            return RunSet(folder, runs_table(folder), steps_table(folder), machine)
        if not (folder / "runs.csv").is_file():
            raise HarnessError(f"{folder}: neither plan.json nor runs.csv; not a `harness compare` output")
        steps_csv = folder / "steps.csv"
        steps = read_steps(steps_csv) if steps_csv.is_file() else read_steps(None)
        return RunSet(folder, read_runs(folder / "runs.csv"), steps, machine)
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{folder}: unreadable run set ({type(exc).__name__}: {exc})") from None


def timed_samples(steps: pd.DataFrame, run_ids: list[str]) -> np.ndarray:
    """Per-step sequences/s of the given runs, warm-up steps left out."""
    rows = steps[steps["run_id"].isin(run_ids) & steps["timed"].fillna(False).astype(bool)]
    return rows["seq_per_s"].dropna().to_numpy(dtype=np.float64)


def run_rates(runs: pd.DataFrame, run_ids: list[str]) -> np.ndarray:
    """Each given run's median sequences/s: the figures that ratios and tests compare."""
    rows = runs[runs["run_id"].isin(run_ids)]
    return rows["throughput_seq_per_s"].dropna().to_numpy(dtype=np.float64)


def ok_rates(runs: pd.DataFrame) -> np.ndarray:
    """The median sequences/s of every run of `runs` that finished ok."""
    return run_rates(runs, runs.loc[runs["status"] == Status.OK, "run_id"].tolist())


def key_ratio(numerator: RunSet, num_row: pd.Series, denominator: RunSet, den_row: pd.Series) -> Ratio:
    """Throughput of one key_stats row over another's, from their ok runs' medians."""
    return ratio(
        run_rates(numerator.runs, num_row["ok_run_ids"].split()),
        run_rates(denominator.runs, den_row["ok_run_ids"].split()),
    )


def key_stats(runset: RunSet) -> pd.DataFrame:
    """One row per configuration key: run statuses, throughput (median of the ok runs' medians,
    the steps' p10..p90, the runs' coefficient of variation), mean final loss and eval accuracy
    over its repeats, the ISA it ran on."""
    rows = []
    runs = runset.runs.dropna(subset=["phase", "precision"])
    for key, group in runs.groupby(KEY, sort=False, dropna=False):
        ok = group[group["status"] == Status.OK]
        steps = Spread.of(timed_samples(runset.steps, ok["run_id"].tolist()))
        per_run = Spread.of(ok_rates(group))
        row = dict(zip(KEY, key, strict=True))
        row.update(
            {
                "runs": len(group),
                "runs_ok": len(ok),
                "statuses": ",".join(sorted(set(group["status"].astype(str)))),
                "samples": steps.n,
                "throughput_seq_per_s": per_run.median,
                "throughput_p10": steps.p10,
                "throughput_p90": steps.p90,
                "run_cv": between_run_cv(ok_rates(group)),
                "final_loss": ok["final_loss"].mean(),
                "eval_mlm_accuracy": ok["eval_mlm_accuracy"].mean(),
                "isa_verified": next(iter(group["isa_verified"].dropna()), None),
                "gemm_isa": next(iter(group["gemm_isa"].dropna()), None),
                "amx_used": bool(group["amx_used"].fillna(False).any()),
                "emulated": bool(group["emulated"].fillna(False).any()),
                "contended": bool(group["contended"].fillna(False).any()),
                "valid": bool(group["valid"].fillna(True).all()),
                "run_ids": " ".join(group["run_id"]),
                "ok_run_ids": " ".join(ok["run_id"]),
                "quiet_run_ids": " ".join(ok.loc[~ok["contended"].fillna(False).astype(bool), "run_id"]),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)
