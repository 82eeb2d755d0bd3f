"""runs.csv (a row per run) and steps.csv (a row per run and step), with stable dtypes.

Every figure comes from a run's result.json and metrics.jsonl; what a run did not produce (a
crashed run has no throughput) stays empty, never zero.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.files import write_atomic
from harness.plan.plan import Outcome, RunSpec
from harness.results.files import metrics_records, read_plan, read_result
from harness.results.records import PlannedModes, Status
from harness.results.run_record import RunRecord
from harness.results.stats import ratio
from harness.results.time_split import TimeSplit

RUN_COLUMNS: dict[str, str] = {
    "run_id": "string",
    "phase": "Int64",
    "precision": "string",
    "backend": "string",
    "repeat": "Int64",
    "status": "string",
    "model": "string",
    "seq_len": "Int64",
    "batch_size": "Int64",
    "steps_measured": "Int64",
    "throughput_seq_per_s": "float64",
    "throughput_p10": "float64",
    "throughput_p90": "float64",
    "step_time_cv": "float64",
    "tokens_per_s": "float64",
    "model_tflops_per_s": "float64",
    "mfu": "float64",
    "reference_run": "string",
    "speedup_vs_fp32": "float64",
    "final_loss": "float64",
    "eval_mlm_accuracy": "float64",
    "loss_gap_vs_fp32": "float64",
    "isa_cap": "string",
    "isa_verified": "string",
    "amx_used": "boolean",
    "emulated": "boolean",
    "valid": "boolean",
    "gemm_isa": "string",
    "amx_gemm_share": "float64",
    "fp32_gemm": "string",
    "kernels": "string",
    "same_computation_as_fp32": "boolean",
    "contended": "boolean",
    "cpu_available": "float64",
    "threads": "Int64",
    "cpu_model": "string",
    "torch_version": "string",
    "started_at": "string",
    "wall_time_s": "float64",
    "peak_rss_gib": "float64",
    # where the census step's time went (harness.results.time_split)
    "census_step_s": "float64",
    "gemm_s": "float64",
    "gemm_by_isa": "string",
    "attention_gemm_s": "float64",
    "other_compute_s": "float64",
    "optimizer_s": "float64",
    "data_wait_s": "float64",
    "harness_s": "float64",
    "speed_of_light_s": "float64",
    "speed_of_light_share": "float64",
    "error": "string",
}
STEP_COLUMNS: dict[str, str] = {
    "run_id": "string",
    "phase": "Int64",
    "precision": "string",
    "repeat": "Int64",
    "step": "Int64",
    "loss": "float64",
    "mlm_loss": "float64",
    "nsp_loss": "float64",
    "lr": "float64",
    "step_time_s": "float64",
    "data_time_s": "float64",
    "seq_per_s": "float64",
    "eval_mlm_accuracy": "float64",
    "eval_loss": "float64",
    "timed": "boolean",
}
"""`timed`: the step counts in the throughput statistics (not a warm-up step, not an eval row)."""


_ENDED_WITHOUT_RESULT = (Status.CRASHED, Status.TIMEOUT, Status.SKIPPED, Status.INTERRUPTED, Status.REFUSED)
"""Outcomes whose error is the last line of the run's log: it wrote no result to say it."""


def _error(outcome: Outcome | None, result: RunRecord | None) -> str | None:
    invalid = result.invalid_reason if result is not None and result.status is Status.INVALID else None
    if result is not None and (result.error or invalid):
        return result.error or invalid
    if outcome is None or outcome.status not in _ENDED_WITHOUT_RESULT:
        return None
    last = outcome.log_tail.splitlines()[-1] if outcome.log_tail else "no output"
    code = f"exit code {outcome.exit_code}; " if outcome.exit_code is not None else ""
    return f"{code}last output: {last}"


def _run_row(spec: RunSpec, outcome: Outcome | None, run_dir: Path) -> dict:
    """A run's row: each column its result.json has a figure for (a RunRecord field of that name),
    else the plan's (a RunSpec field); then the columns made from them. Figures against fp32 are
    runs_table's."""
    r = read_result(run_dir)
    row = {c: _first(getattr(r, c, None), getattr(spec, c, None)) for c in RUN_COLUMNS}
    row["status"] = outcome.status if outcome else Status.NOT_RUN
    row["error"] = _error(outcome, r)
    if r is None:
        return row
    # sorted: two runs of the same kernels list them alike, whatever their times
    row["kernels"] = "; ".join(sorted(r.kernels))
    row["torch_version"] = r.versions["torch"]
    if r.throughput_seq_per_s is not None and r.seq_len is not None:
        row["tokens_per_s"] = r.throughput_seq_per_s * r.seq_len
    if r.time_split is not None:
        row.update(TimeSplit.from_dict(r.time_split).columns())
    return row


def _first(*values: object) -> object:
    return next((v for v in values if v is not None), None)


def runs_table(compare_dir: Path) -> pd.DataFrame:
    """A row per planned run, with speed-up and loss gap against its reference fp32 run of the same
    phase and repeat (PlannedModes.reference: fp32 on its own backend, else stock fp32)."""
    plan = read_plan(compare_dir)
    rows = [_run_row(s, plan.outcome(s.run_id), compare_dir / "runs" / s.run_id) for s in plan.runs]
    df = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    df = df.astype(RUN_COLUMNS)
    planned = PlannedModes.of(df)
    ok = df[df["status"] == Status.OK].set_index(["phase", "repeat", "precision", "backend"])
    losses = {run_id: _losses(compare_dir / "runs" / run_id) for run_id in df["run_id"]}
    for i, row in df.iterrows():
        key = (row["phase"], row["repeat"], *planned.reference(row["precision"], row["backend"]))
        # an interrupted or diverged run's figures cover only part of the steps fp32 ran
        if key not in ok.index or row["status"] != Status.OK:
            continue
        base = ok.loc[key]
        df.loc[i, "reference_run"] = base["run_id"]
        df.loc[i, "speedup_vs_fp32"] = ratio(
            [row["throughput_seq_per_s"]], [base["throughput_seq_per_s"]]
        ).value
        df.loc[i, "loss_gap_vs_fp32"] = row["final_loss"] - base["final_loss"]
        if row["run_id"] != base["run_id"]:
            # Different kernels round differently: bit-identical losses at every step, from the
            # same census, mean that the two runs computed the same thing.
            df.loc[i, "same_computation_as_fp32"] = bool(
                losses[row["run_id"]]
                and losses[row["run_id"]] == losses[base["run_id"]]
                and row["kernels"] == base["kernels"]
            )
    return df


def _losses(run_dir: Path) -> list[float]:
    """The training loss of every step, as recorded."""
    return [r["loss"] for r in metrics_records(run_dir) if "loss" in r]


CENSUS_COLUMNS = (
    "run_id",
    "library",
    "primitive",
    "kernel",
    "isa",
    "dtype",
    "gemm",
    "calls",
    "time_ms",
    "gflop",
    "gemm_time_share",
)


def census_table(compare_dir: Path) -> pd.DataFrame:
    """Every run's kernel census (result.json), a row per kernel, with its share of the GEMM time."""
    rows = []
    for spec in read_plan(compare_dir).runs:
        result = read_result(compare_dir / "runs" / spec.run_id)
        entries = result.kernel_census if result else []
        gemm_ms = sum(e["time_ms"] for e in entries if e["gemm"])
        for e in entries:
            share = e["time_ms"] / gemm_ms if e["gemm"] and gemm_ms else None
            rows.append({"run_id": spec.run_id, **e, "gemm_time_share": share})
    return pd.DataFrame(rows, columns=list(CENSUS_COLUMNS))


def _cold_steps(run_dir: Path, timing_warmup: int) -> set[int]:
    """The steps the run's own statistics left out; a run that wrote no result (it crashed)
    leaves out its first timing_warmup steps."""
    result = read_result(run_dir)
    if result is None:
        return set(range(1, timing_warmup + 1))
    return set(result.cold_steps)


def steps_table(compare_dir: Path) -> pd.DataFrame:
    plan = read_plan(compare_dir)
    frames = []
    for spec in plan.runs:
        run_dir = compare_dir / "runs" / spec.run_id
        records = metrics_records(run_dir)
        if not records:
            continue
        # An evaluation line shares its step with the training line: merge them into one row.
        frame = pd.DataFrame(records).groupby("step", as_index=False).first()
        for key in ("run_id", "phase", "precision", "repeat"):
            frame[key] = getattr(spec, key)
        cold = _cold_steps(run_dir, plan.preset.timing_warmup)
        frame["timed"] = frame.reindex(columns=["seq_per_s"])["seq_per_s"].notna() & ~frame["step"].isin(cold)
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    df = df.reindex(columns=list(STEP_COLUMNS))
    return df.astype(STEP_COLUMNS)


def write_tables(compare_dir: Path) -> tuple[Path, Path]:
    """runs.csv and steps.csv beside plan.json, each written under a temporary name first."""
    out = []
    for name, table in (("runs.csv", runs_table(compare_dir)), ("steps.csv", steps_table(compare_dir))):
        write_atomic(compare_dir / name, table.to_csv(index=False))
        out.append(compare_dir / name)
    return out[0], out[1]


def _complete_rows(path: Path) -> None:
    """Refuse a table cut short: pandas reads a half-written last row as data, with its missing
    fields empty (a gate once judged such a row's nan limits a regression)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: not readable ({exc})") from None
    if text and not text.endswith("\n"):
        raise HarnessError(
            f"{path}: its last row is cut short (no line end): a table written "
            "incompletely; `harness report` on its compare folder writes it anew"
        )
    rows = list(csv.reader(io.StringIO(text)))
    width = len(rows[0]) if rows else 0
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            raise HarnessError(
                f"{path}: row {number} has {len(row)} fields, the header {width}: "
                "not a complete harness table"
            )


def _read(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    _complete_rows(path)
    try:
        df = pd.read_csv(path, dtype=columns)
    except (ValueError, pd.errors.ParserError) as exc:
        raise HarnessError(f"{path}: not a harness table ({exc})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise HarnessError(
            f"{path}: missing columns {', '.join(missing)}; a table from another harness "
            "version: `harness report` on its compare folder writes it anew"
        )
    return df[list(columns)]


def read_runs(path: Path) -> pd.DataFrame:
    return _read(path, RUN_COLUMNS)


def read_steps(path: Path | None) -> pd.DataFrame:
    """steps.csv; an empty table for None (a run set saved without its steps)."""
    if path is None:
        return pd.DataFrame(columns=list(STEP_COLUMNS)).astype(STEP_COLUMNS)
    return _read(path, STEP_COLUMNS)


def summary_lines(df: pd.DataFrame) -> list[str]:
    """The run table as fixed-width text, for the terminal; the run column as wide as its longest
    name (p1-avx-fp32-fused-r0)."""
    width = max([18, *(len(str(r)) for r in df["run_id"])])
    lines = [
        f"{'run':<{width}} {'status':<11} {'seq/s':>9} {'p10..p90':>17} {'speedup':>7} {'final loss':>10} "
        f"{'loss gap':>8} {'eval acc':>8}  GEMM ISA"
    ]
    for _, r in df.iterrows():

        def f(v, fmt):
            return format(v, fmt) if v is not None and not pd.isna(v) else "-"

        spread = f"{f(r['throughput_p10'], '.3f')}..{f(r['throughput_p90'], '.3f')}"
        lines.append(
            f"{r['run_id']:<{width}} {r['status']:<11} {f(r['throughput_seq_per_s'], '9.3f'):>9} "
            f"{spread:>17} {f(r['speedup_vs_fp32'], '.2f'):>7} {f(r['final_loss'], '.4f'):>10} "
            f"{f(r['loss_gap_vs_fp32'], '+.4f'):>8} {f(r['eval_mlm_accuracy'], '.4f'):>8}  "
            f"{r['gemm_isa'] if not pd.isna(r['gemm_isa']) else '-'}"
            f"{' [emulated]' if r['emulated'] is True else ''}"
            f"{f' [same computation as {r.reference_run}]' if r['same_computation_as_fp32'] is True else ''}"
            f"{contended_note(r)}"
        )
    return lines


def contended_note(r: pd.Series) -> str:
    """' [CONTENDED: 63% of its cores]' for a run that shared its cores, else ''."""
    if r["contended"] is not True:
        return ""
    return f" [CONTENDED: {r['cpu_available']:.0%} of its cores]"
