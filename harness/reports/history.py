"""index.html for a folder of run sets: throughput per precision over time, a link to each report.

The run sets (sub-folders that are `harness compare` outputs or saved runs.csv) are ordered by
when their first run started; a chart per phase plots each precision's median (of its runs'
medians), with the p10..p90 of their steps, against that order, so a regression shows as a step
in a line.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.reports.charts import Series, line_chart
from harness.reports.htmlkit import CSS, PALETTE, esc, num
from harness.results.records import Status
from harness.results.runsets import RunSet, is_runset, key_stats, mode_label


def find_runsets(folder: Path) -> list[Path]:
    """Run-set folders at most two levels below folder (e.g. nightly/<date>/). Symbolic links
    are not followed: `latest -> <date>` or `self -> .` would list a set twice."""
    found = []
    for child in _folders(folder):
        if is_runset(child):
            found.append(child)
        else:
            found.extend(g for g in _folders(child) if is_runset(g))
    return found


def _folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())


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
    lines = []
    for (precision, model), line in data.groupby(["mode", "model"], sort=False):
        line = line.sort_values("set_no")
        lines.append(
            Series(
                f"{precision} ({model})",
                colors[precision],
                line["set_no"].tolist(),
                line["throughput_seq_per_s"].tolist(),
                low=line["throughput_p10"].tolist(),
                high=line["throughput_p90"].tolist(),
                markers=True,
            )
        )
    return line_chart(
        f"history-phase{phase}",
        lines,
        "run set, oldest first",
        "sequences/s",
        note="dot: median of the runs' medians; whisker: p10..p90 of their steps",
        x_categories=[f"{s.label[-20:]} {s.started_at[:10]}" for s in sets],
        from_zero=True,
    )


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
        ok = int((s.runs["status"] == Status.OK).sum())
        cls = "good" if ok == len(s.runs) else "bad"
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
