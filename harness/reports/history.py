"""index.html for a folder of run sets: throughput per precision over time, a link to each report.

The run sets (sub-folders that are `harness compare` outputs or saved runs.csv) are ordered by
when their first run started; a chart per phase plots each precision's median (of its runs'
medians), with the p10..p90 of their steps, against that order, so a regression shows as a step
in a line.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.reports.htmlkit import CSS, PALETTE, esc, num
from harness.results.runsets import RunSet, is_runset, key_stats, mode_label


def find_runsets(folder: Path) -> list[Path]:
    """Run-set folders at most two levels below folder (e.g. nightly/<date>/)."""
    found = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        if is_runset(child):
            found.append(child)
        else:
            found.extend(sorted(g for g in child.iterdir() if g.is_dir() and is_runset(g)))
    return found


def _series(sets: list[RunSet]) -> pd.DataFrame:
    """A row per (run set, phase, precision) with its throughput; run sets in time order."""
    frames = []
    for i, s in enumerate(sets):
        stats = key_stats(s)
        if stats.empty:
            continue
        stats["set_no"] = i
        stats["mode"] = [mode_label(p, b) for p, b in zip(stats["precision"], stats["backend"], strict=True)]
        frames.append(stats)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _chart(series: pd.DataFrame, sets: list[RunSet], phase: int, colors: dict[str, str]) -> str:
    data = series[(series.phase == phase) & series.throughput_seq_per_s.notna()]
    if data.empty:
        return f'<p class="muted">no throughput measured in phase {phase}</p>'
    width, height, left, bottom = 900, 300, 60, 60
    top = float(data["throughput_p90"].max()) * 1.05
    n = max(len(sets) - 1, 1)

    def x(i: int) -> float:
        return left + i / n * (width - left - 150)

    def y(v: float) -> float:
        return 10 + (1 - v / top) * (height - bottom - 10)

    parts = [
        f'<svg class="history-chart" id="history-phase{phase}" width="{width}" height="{height}" role="img">'
    ]
    for frac in (0, 0.5, 1):
        parts.append(
            f'<text x="{left - 6}" y="{y(frac * top) + 4:.1f}" text-anchor="end" font-size="11">'
            f"{frac * top:.3g}</text>"
        )
    for i, s in enumerate(sets):
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 16}" font-size="10" text-anchor="middle">'
            f'{esc(s.label[-20:])}<tspan x="{x(i):.1f}" dy="12">{esc(s.started_at[:10])}</tspan></text>'
        )
    legend_y = 20
    for (precision, model), line in data.groupby(["mode", "model"], sort=False):
        color = colors[precision]
        line = line.sort_values("set_no")
        points = " ".join(f"{x(r.set_no):.1f},{y(r.throughput_seq_per_s):.1f}" for r in line.itertuples())
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        for r in line.itertuples():
            parts.append(
                f'<line x1="{x(r.set_no):.1f}" x2="{x(r.set_no):.1f}" y1="{y(r.throughput_p10):.1f}" '
                f'y2="{y(r.throughput_p90):.1f}" stroke="{color}"/>'
            )
            parts.append(
                f'<circle cx="{x(r.set_no):.1f}" cy="{y(r.throughput_seq_per_s):.1f}" r="3.5" '
                f'fill="{color}"><title>{esc(sets[r.set_no].label)}: {esc(precision)} '
                f"{r.throughput_seq_per_s:.3f} seq/s</title></circle>"
            )
        parts.append(
            f'<text x="{width - 140}" y="{legend_y}" font-size="12" fill="{color}">'
            f"{esc(precision)} ({esc(model)})</text>"
        )
        legend_y += 16
    parts.append(
        f'<text x="{left}" y="{height - 12}" font-size="11" fill="#777">sequences/s per run set, '
        "oldest first: dot = median of the runs' medians, line = p10..p90 of their steps</text></svg>"
    )
    return "".join(parts)


def _link(folder: Path, s: RunSet) -> str:
    target = s.path / "report.html" if (s.path / "report.html").is_file() else s.path / "runs.csv"
    return f'<a href="{esc(target.relative_to(folder).as_posix())}">{esc(s.label)}</a>'


def render_history(folder: Path, sets: list[RunSet]) -> str:
    series = _series(sets)
    precisions = list(dict.fromkeys(series["mode"])) if len(series) else []
    colors = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(precisions)}
    columns = series[["phase", "mode"]].drop_duplicates().values.tolist() if len(series) else []
    head = "".join(f"<th>p{phase} {esc(precision)} seq/s</th>" for phase, precision in columns)
    rows = []
    for i, s in enumerate(sets):
        mine = series[series.set_no == i] if len(series) else series
        cells = []
        for phase, precision in columns:
            hit = mine[(mine.phase == phase) & (mine["mode"] == precision)]
            cells.append(f"<td>{num(hit['throughput_seq_per_s'].iloc[0] if len(hit) else None, '.3f')}</td>")
        ok = int((s.runs["status"] == "ok").sum())
        cls = "ok" if ok == len(s.runs) else "bad"
        rows.append(
            f'<tr><td class="l">{esc(s.started_at)}</td><td class="l">{_link(folder, s)}</td>'
            f'<td class="l">{esc(s.commit)}</td><td class="l">{esc(s.machine.get("cpu_model"))}</td>'
            f'<td class="{cls}">{ok}/{len(s.runs)}</td>{"".join(cells)}</tr>'
        )
    charts = (
        "".join(
            f"<h3>Phase {p}</h3>{_chart(series, sets, p, colors)}"
            for p in sorted(series["phase"].dropna().unique())
        )
        if len(series)
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>harness history: {esc(folder.name)}</title>
<style>{CSS}</style></head><body>
<h1>BERT pre-training: {len(sets)} run sets over time</h1>
<p class="muted">{esc(folder.resolve())}; throughput is the median of each set's runs' medians.</p>
<h2>Throughput over time</h2>{charts}
<h2>Run sets</h2><table id="runsets"><tr><th class="l">started</th><th class="l">run set</th>
<th class="l">harness commit</th><th class="l">CPU</th><th>ok</th>{head}</tr>{"".join(rows)}</table>
</body></html>
"""
