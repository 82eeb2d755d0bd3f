"""Several run sets (two machines, two commits) on one self-contained page, the first as reference.

Runs are matched by configuration (phase, precision, model, batch, seq len); a configuration's
throughput is the median of its runs' medians, and every other set's is shown as a ratio to the
first's with its interval (harness.results.stats). Machines and library versions are listed side
by side so that a difference in throughput can be traced to a difference in setting.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.reports.charts import Interval, interval_chart
from harness.reports.htmlkit import CSS, PALETTE, esc, num
from harness.results.runsets import KEY, RunSet, key_label, key_stats, run_rates
from harness.results.stats import ratio

MACHINE_FIELDS = [
    ("cpu_model", "CPU"),
    ("physical_cores", "physical cores"),
    ("sockets", "sockets"),
    ("amx_usable", "AMX usable"),
]
VERSION_FIELDS = ["harness_commit", "torch", "onednn", "mkl", "python"]


def _matched(stats: list[pd.DataFrame]) -> pd.DataFrame:
    """The union of keys, in the order they first appear, with each set's figures suffixed _i."""
    keys = pd.concat([s[KEY] for s in stats if len(s)], ignore_index=True).drop_duplicates()
    out = keys.reset_index(drop=True)
    for i, s in enumerate(stats):
        if s.empty:
            continue
        out = out.merge(
            s.add_suffix(f"_{i}").rename(columns={f"{k}_{i}": k for k in KEY}), on=KEY, how="left"
        )
    return out


def _machines(sets: list[RunSet]) -> str:
    head = "".join(f"<th>{esc(s.label)}</th>" for s in sets)
    rows = [f'<tr><th class="l">started</th>{"".join(f"<td>{esc(s.started_at)}</td>" for s in sets)}</tr>']
    fields = [(k, t, lambda s, k=k: s.machine.get(k)) for k, t in MACHINE_FIELDS]
    fields += [(k, k, lambda s, k=k: s.machine.get("versions", {}).get(k)) for k in VERSION_FIELDS]
    for _, title, get in fields:
        values = [get(s) for s in sets]
        differs = len({str(v) for v in values}) > 1
        cells = "".join(f'<td class="{"warn" if differs else ""}">{esc(v)}</td>' for v in values)
        rows.append(f'<tr><th class="l">{esc(title)}</th>{cells}</tr>')
    return f'<table id="machines"><tr><th></th>{head}</tr>{"".join(rows)}</table>'


def _throughput(matched: pd.DataFrame, sets: list[RunSet]) -> str:
    head = "".join(
        f"<th>{esc(s.label)} seq/s (p10..p90)</th>" + (f"<th>vs {esc(sets[0].label)}</th>" if i else "")
        for i, s in enumerate(sets)
    )
    rows = []
    for _, r in matched.iterrows():
        cells = []
        for i in range(len(sets)):
            median = r.get(f"throughput_seq_per_s_{i}")
            status = r.get(f"statuses_{i}")
            if median is None or pd.isna(median):
                text = esc(status) if isinstance(status, str) else "not run"
                cells.append(f'<td class="{"bad" if isinstance(status, str) else "muted"}">{text}</td>')
            else:
                contended = r.get(f"contended_{i}") is True
                cells.append(
                    f"<td>{median:.3f} ({r[f'throughput_p10_{i}']:.3f}..{r[f'throughput_p90_{i}']:.3f})"
                    f"{'' if status == 'ok' else f' <span class=warn>{esc(status)}</span>'}"
                    f"{' <span class=bad>CONTENDED</span>' if contended else ''}</td>"
                )
            if i:
                cells.append(_ratio_cell(r, sets, i))
        rows.append(f'<tr><td class="l">{esc(key_label(r))}</td>{"".join(cells)}</tr>')
    return f'<table id="throughput"><tr><th class="l">run</th>{head}</tr>{"".join(rows)}</table>'


def _ratio_cell(r: pd.Series, sets: list[RunSet], i: int) -> str:
    """Set i's throughput over the first set's, from their runs' medians: coloured only when the
    interval excludes 1 and neither side shared its cores."""
    ids_0, ids_i = r.get("ok_run_ids_0"), r.get(f"ok_run_ids_{i}")
    if not isinstance(ids_0, str) or not isinstance(ids_i, str):
        return '<td class="muted">-</td>'
    q = ratio(run_rates(sets[i].runs, ids_i.split()), run_rates(sets[0].runs, ids_0.split()))
    if math.isnan(q.value):
        return '<td class="muted">-</td>'
    contended = r.get("contended_0") is True or r.get(f"contended_{i}") is True
    cls = "good" if q.value > 1 else "bad"
    if contended or not q.significant:
        cls = "muted"
    note = " contended: not judged" if contended else ("" if q.significant else " no significant difference")
    return f'<td class="{cls}" title="{esc(q.text())}">{esc(q.text())}{note}</td>'


def _convergence(matched: pd.DataFrame, sets: list[RunSet]) -> str:
    head = "".join(
        f"<th>{esc(s.label)} final loss</th><th>eval MLM acc</th><th>GEMM ISA (oneDNN's ceiling)</th>"
        for s in sets
    )
    rows = []
    for _, r in matched.iterrows():
        cells = "".join(
            f"<td>{num(r.get(f'final_loss_{i}'), '.4f')}</td>"
            f"<td>{num(r.get(f'eval_mlm_accuracy_{i}'), '.4f')}</td>"
            f'<td class="l">{esc(r.get(f"gemm_isa_{i}"))} ({esc(r.get(f"isa_verified_{i}"))})'
            f"{' [AMX]' if r.get(f'amx_used_{i}') is True else ''}"
            f"{' [emulated]' if r.get(f'emulated_{i}') is True else ''}</td>"
            for i in range(len(sets))
        )
        rows.append(f'<tr><td class="l">{esc(key_label(r))}</td>{cells}</tr>')
    return f'<table id="convergence"><tr><th class="l">run</th>{head}</tr>{"".join(rows)}</table>'


def _chart(matched: pd.DataFrame, sets: list[RunSet]) -> str:
    """A group per configuration, a bar per run set; a set without that configuration says so."""
    rows = []
    for _, r in matched.iterrows():
        for i, s in enumerate(sets):
            median = r.get(f"throughput_seq_per_s_{i}")
            status = r.get(f"statuses_{i}")
            measured = median is not None and not pd.isna(median)
            rows.append(
                Interval(
                    label=s.label,
                    color=PALETTE[i % len(PALETTE)],
                    median=float(median) if measured else None,
                    p10=float(r[f"throughput_p10_{i}"]) if measured else None,
                    p90=float(r[f"throughput_p90_{i}"]) if measured else None,
                    note="" if measured else (str(status) if isinstance(status, str) else "not run"),
                    group=key_label(r),
                )
            )
    return interval_chart(
        "side-by-side-chart",
        rows,
        "throughput, sequences/s (bar: median of the runs' medians; whisker: p10..p90 of their steps)",
    )


def render_side_by_side(sets: list[RunSet]) -> str:
    matched = _matched([key_stats(s) for s in sets])
    names = ", ".join(esc(s.label) for s in sets)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>harness: {names}</title>
<style>{CSS}</style></head><body>
<h1>BERT pre-training: {len(sets)} run sets side by side</h1>
<p class="muted">{"; ".join(esc(s.path.resolve()) for s in sets)}. Ratios are against
{esc(sets[0].label)}, from the runs' medians; p10..p90 is the spread of the steps inside the runs.</p>
<h2>Machines and versions</h2>{_machines(sets)}
<h2>Throughput</h2>{_throughput(matched, sets)}{_chart(matched, sets)}
<h2>Convergence and ISA</h2>{_convergence(matched, sets)}
</body></html>
"""
