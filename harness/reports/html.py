"""report.html: one self-contained page (inline CSS and SVG, no script, no network) per comparison.

Verdicts and the summary table first, then throughput with its spread, loss curves per phase with
every precision overlaid (raw and smoothed), evaluation accuracy, MFU, and the machine with the
ISA each run really used. Failed, diverged, invalid and skipped runs are shown as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.files import write_atomic
from harness.reports.charts import (
    Interval,
    Series,
    Stack,
    centred_mean,
    interval_chart,
    line_chart,
    smoothing_window,
    stacked_chart,
)
from harness.reports.convergence import section as convergence_section
from harness.reports.htmlkit import CSS, PALETTE, esc, table
from harness.results.convergence import Criteria
from harness.results.files import read_plan
from harness.results.records import PlannedModes, Status
from harness.results.runsets import load_runset, mode_label, ok_rates
from harness.results.stats import Ratio, ratio
from harness.results.tables import census_table
from harness.results.time_split import TimeSplit


def _modes(runs: pd.DataFrame) -> pd.Series:
    """Each run's precision, with its backend when that is not stock PyTorch (bf16+ipex)."""
    return pd.Series(
        [mode_label(p, b) for p, b in zip(runs["precision"], runs["backend"], strict=True)], index=runs.index
    )


def _refusal(mine: pd.DataFrame) -> str | None:
    """Why this machine did not run a mode, when it refused it (and skipped its phase 2)."""
    refused = mine.status == Status.REFUSED
    if not (refused | (mine.status == Status.SKIPPED)).all() or not refused.any():
        return None
    reason = str(mine.loc[refused, "error"].iloc[0])
    return reason.split("last output: ", 1)[-1].removeprefix("harness: ")


def _speed(r: Ratio) -> tuple[str, str]:
    """(css class, words) for a speed-up: green or red only when its interval excludes 1."""
    if not r.has_interval:
        return "muted", f"speed-up {r.text()}: not tested (--seeds 3 or more gives an interval)"
    if not r.significant:
        return "muted", f"no significant difference in speed: {r.text()}"
    return ("good" if r.value > 1 else "bad"), f"{'faster' if r.value > 1 else 'SLOWER'}: {r.text()}"


def verdicts(runs: pd.DataFrame, tolerance: float | None) -> list[tuple[str, str, str]]:
    """(phase and mode, css class, sentence) per mode and phase that has a reference fp32 other than
    itself (PlannedModes.reference: bf16+fused against fp32+fused, fp32+fused against fp32): its
    speed against the reference's, from the runs' medians, and its convergence (its final loss
    within `tolerance` of the reference's; None: a run set whose convergence is not judged)."""
    out = []
    modes = _modes(runs)
    planned = PlannedModes.of(runs)
    for precision, backend in planned.pairs:
        mode, reference = mode_label(precision, backend), mode_label(*planned.reference(precision, backend))
        if mode == reference:
            continue
        refused = _refusal(runs[modes == mode])
        if refused:  # a mode this machine cannot run natively is not a failure of the run
            out.append((mode, "warn", "not run here: " + refused))
            continue
        for phase in sorted(runs.loc[modes == mode, "phase"].dropna().unique()):
            mine = runs[(modes == mode) & (runs.phase == phase)]
            ref = runs[(modes == reference) & (runs.phase == phase)]
            out.append((f"p{phase} {mode}", *_verdict(mine, ref, reference, tolerance)))
    return out


def _verdict(
    mine: pd.DataFrame, ref: pd.DataFrame, reference: str, tolerance: float | None
) -> tuple[str, str]:
    """(css class, sentence) for one mode's runs of a phase against its reference's."""
    bad = mine[mine.status != Status.OK]
    if len(bad):
        runs_text = ", ".join(f"{r.run_id} {r.status}" for r in bad.itertuples())
        return "bad", f"{len(bad)} of {len(mine)} runs did not finish ok: {runs_text}"
    gaps = mine["loss_gap_vs_fp32"].dropna()
    if gaps.empty:
        return "warn", f"no {reference} run to compare with"
    r = ratio(ok_rates(mine), ok_rates(ref))
    if mine["same_computation_as_fp32"].fillna(False).all():
        return "muted", (
            f"same computation on this CPU as {reference} (the same kernels, losses identical at "
            f"every step): the difference is noise (speed-up {r.text()})"
        )
    worst = float((gaps.abs() / (mine["final_loss"] - gaps)).max())
    converges = tolerance is None or worst <= tolerance
    loss = (
        "convergence not judged"
        if tolerance is None
        else f"final loss {'within' if converges else 'OUTSIDE'} {tolerance:.0%} of {reference}'s "
        f"(largest gap {worst:.2%})"
    )
    if pd.concat([mine, ref])["contended"].fillna(False).astype(bool).any():
        return "warn", f"speed-up not judged: a run of it or of {reference} shared its cores; {loss}"
    css, speed = _speed(r)
    emulated = (
        " (emulated: this CPU has no instructions for its number format)"
        if mine["emulated"].fillna(False).any()
        else ""
    )
    return (css if converges else "bad"), f"{speed}{emulated}; {loss}"


def _contention_banner(runs: pd.DataFrame) -> str:
    """A warning above everything else when a run shared its cores: its throughput says nothing."""
    contended = runs[runs["contended"].fillna(False).astype(bool)]
    if contended.empty:
        return ""
    items = ", ".join(f"{esc(r.run_id)} ({r.cpu_available:.0%} of its cores)" for r in contended.itertuples())
    return (
        f'<p id="contended" class="bad">CONTENDED: {items} shared their cores with other processes or '
        "the hypervisor; their throughput is no evidence of the code's speed. Run them again on a quiet "
        "machine.</p>"
    )


MFU_MISSING = 'MFU "-": no large-matmul peak was measured'
SOL_MISSING = 'Speed of light "-": no matmul peak with its stream bandwidth was measured'


def _roofline_note(runs: pd.DataFrame, column: str, note_id: str, lacking: str) -> str:
    """What fills a figure shown as "-" for a run that finished: `harness roofline` on this
    machine, before the runs (compare measures it first where the store has none)."""
    missing = runs[(runs.status == Status.OK) & runs[column].isna()]
    if missing.empty:
        return ""
    modes = ",".join(dict.fromkeys(missing.precision))
    return (
        f'<p id="{note_id}" class="muted">{lacking} for {esc(modes)} on this machine at this thread '
        f"count. <code>python -m harness roofline --precisions {esc(modes)}</code> measures it; "
        "runs after it report against it.</p>"
    )


def _bars(runs: pd.DataFrame, colors: dict[str, str]) -> str:
    """Every run's median throughput with its p10..p90, by phase; a run without one says why."""
    rows = [
        Interval(
            label=r.run_id,
            color=colors[mode_label(r.precision, r.backend)],
            median=None if pd.isna(r.throughput_seq_per_s) else r.throughput_seq_per_s,
            p10=None if pd.isna(r.throughput_p10) else r.throughput_p10,
            p90=None if pd.isna(r.throughput_p90) else r.throughput_p90,
            note="" if r.status == Status.OK else str(r.status),
            group=f"phase {r.phase}",
        )
        for r in runs.itertuples()
    ]
    return interval_chart(
        "throughput-chart",
        rows,
        "throughput, sequences/s (bar: median of the timed steps; whisker: p10..p90)",
    )


def _loss_chart(steps: pd.DataFrame, phase: int, colors: dict[str, str], run_modes: dict[str, str]) -> str:
    data = steps[(steps.phase == phase) & steps.loss.notna()]
    if data.empty:
        return f'<p class="muted">no steps recorded in phase {phase}</p>'
    longest = int(data.groupby("run_id").size().max())
    window = smoothing_window(longest)
    series = [
        Series(
            run_id,
            colors[run_modes[run_id]],
            run["step"].tolist(),
            centred_mean(run["loss"].tolist(), window),
            raw=run["loss"].tolist(),
        )
        for run_id, run in data.groupby("run_id", sort=False)
    ]
    return line_chart(
        f"loss-phase{phase}",
        series,
        "optimizer step",
        "training loss (MLM + NSP, nats)",
        note=f"faint: every step; bold: mean of {window} steps centred on each" if window > 1 else "",
    )


SUMMARY = [
    ("run_id", "run", "s"),
    ("status", "status", "s"),
    ("model", "model", "s"),
    ("seq_len", "seq", "d"),
    ("batch_size", "batch", "d"),
    ("throughput_seq_per_s", "seq/s", ".3f"),
    ("throughput_p10", "p10", ".3f"),
    ("throughput_p90", "p90", ".3f"),
    ("step_time_cv", "step cv", ".1%"),
    ("speedup_vs_fp32", "speed-up", ".2f"),
    ("final_loss", "final loss", ".4f"),
    ("loss_gap_vs_fp32", "gap vs fp32", "+.4f"),
    ("eval_mlm_accuracy", "eval MLM acc", ".4f"),
]
EFFICIENCY = [
    ("run_id", "run", "s"),
    ("tokens_per_s", "tokens/s", ".1f"),
    ("model_tflops_per_s", "model TFLOP/s", ".4f"),
    ("mfu", "MFU", ".1%"),
    ("speed_of_light_share", "% of speed of light", ".1%"),
    ("threads", "threads", "d"),
    ("wall_time_s", "wall s", ".1f"),
    ("peak_rss_gib", "peak RSS GiB", ".2f"),
]
ISA = [
    ("run_id", "run", "s"),
    ("isa_cap", "ISA cap", "s"),
    ("isa_verified", "oneDNN's ceiling", "s"),
    ("gemm_isa", "GEMM ISA (most time)", "s"),
    ("amx_gemm_share", "AMX share of GEMM time", ".1%"),
    ("fp32_gemm", "fp32 GEMMs in", "s"),
    ("amx_used", "AMX used", "s"),
    ("emulated", "emulated", "s"),
    ("valid", "valid", "s"),
]
CENSUS = [
    ("run_id", "run", "s"),
    ("library", "library", "s"),
    ("primitive", "primitive", "s"),
    ("kernel", "kernel", "s"),
    ("isa", "ISA", "s"),
    ("dtype", "dtype", "s"),
    ("calls", "calls", "d"),
    ("time_ms", "time ms", ".2f"),
    ("gflop", "GFLOP", ".2f"),
    ("gemm_time_share", "share of GEMM time", ".1%"),
]
TIME = [
    ("run_id", "run", "s"),
    ("census_step_s", "step s", ".3f"),
    ("gemm_s", "GEMMs s", ".3f"),
    ("attention_gemm_s", "attention GEMMs s", ".3f"),
    ("other_compute_s", "rest of fwd+bwd s", ".3f"),
    ("optimizer_s", "optimizer s", ".3f"),
    ("data_wait_s", "data wait s", ".4f"),
    ("harness_s", "harness s", ".4f"),
    ("gemm_by_isa", "GEMMs by library:ISA (s)", "s"),
    ("speed_of_light_s", "speed of light s", ".3f"),
    ("speed_of_light_share", "% of speed of light", ".1%"),
]
"""The columns of the page's tables: (runs.csv or census column, heading, format)."""
TIME_COLORS = {
    "attention's batched GEMMs": "#7b4fb8",
    "rest of forward and backward": "#e08a1e",
    "optimizer": "#2e9a4a",
    "data wait": "#999999",
    "harness": "#c0392b",
}
GEMM_COLORS = ("#1f4e99", "#3f7fd0", "#7fb0ea", "#0b2a5c", "#a9c9f0")
"""The parts of a step's time, each its colour; the GEMMs by library and ISA in blues."""


@dataclass(frozen=True)
class Page:
    """What the sections of one run set's page read."""

    compare_dir: Path
    runs: pd.DataFrame
    steps: pd.DataFrame
    machine: dict
    criteria: Criteria
    unjudged: str | None
    """Why the run set's convergence is not judged (its preset's), or None."""

    @property
    def colors(self) -> dict[str, str]:
        return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(dict.fromkeys(_modes(self.runs)))}


def _header(page: Page) -> str:
    judging = (
        f"convergence not judged: {page.unjudged}"
        if page.unjudged
        else f"convergence tolerance {page.criteria.loss_tolerance:.0%} of fp32's final loss (one seed)"
    )
    return (
        f"<h1>BERT pre-training: precision comparison</h1>\n"
        f'<p class="muted">{esc(page.compare_dir.resolve())} &middot; {len(page.runs)} runs &middot; '
        f"{esc(judging)}</p>\n{_contention_banner(page.runs)}"
    )


def _verdicts_section(page: Page) -> str:
    tolerance = None if page.unjudged else page.criteria.loss_tolerance
    items = "".join(
        f'<li><b>{esc(p)}</b>: <span class="{c}">{esc(text)}</span></li>'
        for p, c, text in verdicts(page.runs, tolerance)
    )
    return f'<h2>Verdicts</h2><ul id="verdicts">{items or "<li>only fp32 was run</li>"}</ul>'


def _summary_section(page: Page) -> str:
    return f'<h2>Summary</h2><div id="summary">{table(page.runs, SUMMARY)}</div>'


NO_PROBLEMS = '<li class="good">every run finished ok</li>'


def _problems_section(page: Page) -> str:
    problems = page.runs[page.runs.status != Status.OK]
    items = "".join(
        f'<li><b>{esc(r.run_id)}</b> <span class="bad">{esc(r.status)}</span>: '
        f"<code>{esc(r.error)}</code></li>"
        for r in problems.itertuples()
    )
    return f'<h2>Problems</h2><ul id="problems">{items or NO_PROBLEMS}</ul>'


def _throughput_section(page: Page) -> str:
    return f"<h2>Throughput</h2>{_bars(page.runs, page.colors)}"


def _loss_section(page: Page) -> str:
    run_modes = dict(zip(page.runs["run_id"], _modes(page.runs), strict=True))
    charts = "".join(
        f"<h3>Phase {p}</h3>{_loss_chart(page.steps, p, page.colors, run_modes)}"
        for p in sorted(page.runs["phase"].dropna().unique())
    )
    return f"<h2>Loss curves</h2>{charts}"


def _convergence_section(page: Page) -> str:
    return convergence_section(page.runs, page.steps, page.colors, page.criteria, page.unjudged)


def _efficiency_section(page: Page) -> str:
    note = _roofline_note(page.runs, "mfu", "mfu-note", MFU_MISSING)
    return f'<h2>Efficiency</h2><div id="efficiency">{table(page.runs, EFFICIENCY)}</div>{note}'


def _time_section(page: Page) -> str:
    """Where each run's census step went (harness.results.time_split), as shares of the step."""
    splits = {r["run_id"]: TimeSplit.from_columns(r) for r in page.runs.to_dict("records")}
    units = dict.fromkeys(u for split in splits.values() if split for u in split.gemm_s)
    colors = {f"GEMM {u}": GEMM_COLORS[i % len(GEMM_COLORS)] for i, u in enumerate(units)} | TIME_COLORS
    rows = [
        Stack(run_id, split.parts() if split else {}, "no census step recorded")
        for run_id, split in splits.items()
    ]
    chart = stacked_chart("time-split-chart", rows, colors, "share of the census step's wall time, %")
    note = _roofline_note(page.runs, "speed_of_light_s", "sol-note", SOL_MISSING)
    return (
        '<h2>Where the time goes</h2><p class="muted">The census step of each run (one untimed step '
        "with the libraries' verbose logs on, a little slower than a timed one): its GEMMs as the "
        "libraries timed them, by library and ISA; attention's batched GEMMs; the rest of forward "
        "and backward; the optimizer; the wait for data; and the harness's own work, the rest of "
        f'the step.</p>{chart}<p class="muted">{SPEED_OF_LIGHT}</p>'
        f'<div id="time-split">{table(page.runs, TIME)}</div>{note}'
    )


SPEED_OF_LIGHT = (
    "Speed of light: the census step's GEMM FLOPs at the mode's matmul peak plus the optimizer's "
    "least bytes (LAMB's three passes) at the stream bandwidth, both measured by harness roofline; "
    "% of speed of light: that over the timed steps' median step time."
)


def _isa_section(page: Page) -> str:
    census = census_table(page.compare_dir)
    census_html = (
        table(census, CENSUS) if len(census) else '<p class="muted">no run recorded a kernel census</p>'
    )
    return (
        f'<h2>ISA actually used</h2><div id="isa">{table(page.runs, ISA)}</div>\n'
        "<h3>Kernel census</h3><p class=\"muted\">One untimed step of each run, with oneDNN's and MKL's "
        "verbose\noutput on: every kernel the libraries ran, by data type. GEMMs that neither library "
        f'reports were\ncomputed by PyTorch itself.</p><div id="census">{census_html}</div>'
    )


def _machine_section(page: Page) -> str:
    fields = [(k, v) for k, v in page.machine.items() if k not in ("flags", "versions")]
    fields += list(page.machine.get("versions", {}).items())
    rows = "".join(f'<tr><th class="l">{esc(k)}</th><td class="l">{esc(v)}</td></tr>' for k, v in fields)
    return f'<h2>Machine</h2><table id="machine">{rows}</table>'


SECTIONS = (
    _header,
    _verdicts_section,
    _summary_section,
    _problems_section,
    _throughput_section,
    _loss_section,
    _convergence_section,
    _efficiency_section,
    _time_section,
    _isa_section,
    _machine_section,
)
"""The page, top to bottom."""


def render(compare_dir: Path, criteria: Criteria) -> str:
    runset = load_runset(compare_dir)
    unjudged = read_plan(compare_dir).preset.unjudged()
    page = Page(compare_dir, runset.runs, runset.steps, runset.machine, criteria, unjudged)
    body = "\n".join(section(page) for section in SECTIONS)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>harness comparison: {esc(compare_dir.name)}</title>
<style>{CSS}</style></head><body>
{body}
</body></html>
"""


def write_report(compare_dir: Path, criteria: Criteria) -> Path:
    path = compare_dir / "report.html"
    write_atomic(path, render(compare_dir, criteria))
    return path
