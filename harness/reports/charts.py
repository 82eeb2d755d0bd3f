"""Every chart on the harness's pages, as inline SVG drawn by one scale and axis code.

Three kinds: `line_chart` (loss over steps, throughput over run sets), `interval_chart` (a
median with its p10..p90 per run or configuration) and `stacked_chart` (the shares of a whole per
run: where a step's time goes). Each has axes with ticks, labels and units.
Lines that coincide stay visible: each series has its own dash pattern, and the earlier ones are
drawn wider underneath, so two identical curves show as a wide line with a dashed one on it.

Hand-written rather than matplotlib's SVG backend: these kinds are all the pages need, the
page stays a few kilobytes (matplotlib writes each glyph as a path), and the install stays small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.reports.htmlkit import esc

DASHES = ("", "7 4", "2 3", "9 3 2 3", "4 2", "1 2")
"""Series i is dashed DASHES[i % len]: coinciding series remain distinguishable."""
FONT = 'font-family="system-ui,sans-serif"'


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        lo, hi = (lo - 1, hi + 1) if lo == 0 else (lo - abs(lo) * 0.1, hi + abs(hi) * 0.1)
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    ticks = [round(k * step, 12) for k in range(first, last + 1)]
    return ticks if len(ticks) >= 2 else [ticks[0], ticks[0] + step]


def smoothing_window(points: int) -> int:
    """An odd window about a tenth of the curve: short curves (a smoke run) stay unsmoothed."""
    return max(1, points // 10) | 1


def centred_mean(values: Sequence[float], window: int) -> list[float]:
    """The mean of `window` values centred on each (fewer at the ends). Centred, it does not lag:
    an exponential average trails a falling loss and ends above it."""
    half = window // 2
    out = []
    for i in range(len(values)):
        part = values[max(0, i - half) : i + half + 1]
        out.append(sum(part) / len(part))
    return out


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.3g}"


@dataclass
class _Scale:
    lo: float
    hi: float
    start: float  # pixels
    end: float

    def __call__(self, value: float) -> float:
        span = self.hi - self.lo or 1.0
        return self.start + (value - self.lo) / span * (self.end - self.start)


@dataclass
class Series:
    """One line: points (x, y), optionally a p10..p90 whisker per point, and a faint raw line
    under it (the unsmoothed values)."""

    name: str
    color: str
    xs: Sequence[float]
    ys: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None
    raw: Sequence[float] | None = None
    markers: bool = False
    band: bool = False
    """low..high drawn as a shaded band (a spread over seeds) rather than a whisker per point."""


def line_chart(
    chart_id: str,
    series: list[Series],
    x_label: str,
    y_label: str,
    note: str = "",
    x_categories: list[str] | None = None,
    from_zero: bool = False,
    width: int = 900,
    height: int = 340,
) -> str:
    """Lines over a numeric x axis, or over `x_categories` (x = their index); `from_zero`: the y
    axis starts at 0 (a rate, whose size is read against nothing)."""
    legend_w = 200
    height += 16 if note else 0
    below = (70 if x_categories else 48) + (16 if note else 0)
    left, right, top, bottom = 70, width - legend_w - 10, 14, height - below
    xs = [x for s in series for x in s.xs]
    ys = [y for s in series for values in (s.ys, s.low or [], s.high or [], s.raw or []) for y in values]
    ys = [y for y in ys if math.isfinite(y)]
    if not xs or not ys:
        return f'<p class="muted">nothing to chart ({esc(y_label)})</p>'
    if x_categories:
        x_ticks = list(range(len(x_categories)))
        sx = _Scale(-0.5, len(x_categories) - 0.5, left, right)
    else:
        x_ticks = nice_ticks(min(xs), max(xs))
        sx = _Scale(min(min(xs), x_ticks[0]), max(max(xs), x_ticks[-1]), left, right)
    y_ticks = nice_ticks(0.0 if from_zero else min(ys), max(ys))
    sy = _Scale(y_ticks[0], y_ticks[-1], bottom, top)
    parts = [f'<svg id="{chart_id}" class="chart" width="{width}" height="{height}" role="img" {FONT}>']
    parts += _y_axis(sy, y_ticks, left, right, y_label)
    for t in x_ticks:
        x = sx(t)
        text = esc(x_categories[t]) if x_categories else _label(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 5}" stroke="#555"/>')
        if x_categories:
            parts.append(
                f'<text x="{x:.1f}" y="{bottom + 16}" font-size="10" text-anchor="end" '
                f'transform="rotate(-20 {x:.1f} {bottom + 16})">{text}</text>'
            )
        else:
            parts.append(
                f'<text x="{x:.1f}" y="{bottom + 17}" font-size="11" text-anchor="middle">{text}</text>'
            )
    label_y = height - (24 if note else 8)
    parts.append(
        f'<text x="{(left + right) / 2:.0f}" y="{label_y}" font-size="12" text-anchor="middle">'
        f"{esc(x_label)}</text>"
    )
    for i, s in enumerate(series):
        parts += _series(s, i, len(series), sx, sy)
    parts += _legend(series, right + 16, top + 6)
    if note:
        parts.append(f'<text x="{left}" y="{height - 6}" font-size="10" fill="#777">{esc(note)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _grid(scale: _Scale, ticks: list[float], a: float, b: float, vertical: bool) -> list[str]:
    """A light line across [a, b] at each tick and the tick's value: vertical lines labelled below
    b (an x axis), or horizontal ones labelled left of a (a y axis)."""
    parts = []
    for t in ticks:
        p = scale(t)
        x1, x2, y1, y2 = (p, p, a, b) if vertical else (a, b, p, p)
        parts.append(f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="#eee"/>')
        tx, ty, anchor = (p, b + 16, "middle") if vertical else (a - 6, p + 4, "end")
        parts.append(
            f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="11" text-anchor="{anchor}">{_label(t)}</text>'
        )
    return parts


def _y_axis(sy: _Scale, ticks: list[float], left: float, right: float, label: str) -> list[str]:
    parts = _grid(sy, ticks, left, right, vertical=False)
    parts.append(f'<line x1="{left}" x2="{left}" y1="{sy.start}" y2="{sy.end}" stroke="#555"/>')
    parts.append(f'<line x1="{left}" x2="{right}" y1="{sy.start}" y2="{sy.start}" stroke="#555"/>')
    mid = (sy.start + sy.end) / 2
    parts.append(
        f'<text x="14" y="{mid:.0f}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {mid:.0f})">{esc(label)}</text>'
    )
    return parts


def _series(s: Series, i: int, n: int, sx: _Scale, sy: _Scale) -> list[str]:
    # earlier series wider and lighter underneath: a later one on the same points leaves it visible
    width, dash, opacity = _style(i, n)
    parts = []
    if s.band and s.low is not None and s.high is not None:
        edge = [(x, y) for x, y in zip(s.xs, s.high, strict=True)]
        edge += [(x, y) for x, y in reversed(list(zip(s.xs, s.low, strict=True)))]
        outline = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in edge)
        parts.append(f'<polygon points="{outline}" fill="{s.color}" opacity="0.18" stroke="none"/>')
    if s.raw is not None:
        raw = " ".join(
            f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(s.xs, s.raw, strict=True) if math.isfinite(y)
        )
        parts.append(
            f'<polyline points="{raw}" fill="none" stroke="{s.color}" stroke-width="1" opacity="0.25"/>'
        )
    points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(s.xs, s.ys, strict=True) if math.isfinite(y))
    parts.append(
        f'<polyline points="{points}" fill="none" stroke="{s.color}" stroke-width="{width:.1f}" '
        f'stroke-linejoin="round" opacity="{opacity}"{dash}><title>{esc(s.name)}</title></polyline>'
    )
    for j, (x, y) in enumerate(zip(s.xs, s.ys, strict=True)):
        if s.low is not None and s.high is not None and not s.band:
            parts.append(
                f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{sy(s.low[j]):.1f}" y2="{sy(s.high[j]):.1f}" '
                f'stroke="{s.color}" stroke-width="1.5"/>'
            )
        if s.markers:
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{s.color}">'
                f"<title>{esc(s.name)}: {y:.4g}</title></circle>"
            )
    return parts


def _style(i: int, n: int) -> tuple[float, str, float]:
    """Series i of n: its stroke width, dash attribute and opacity (the last drawn solid on top)."""
    width = 2 + 3 * (n - 1 - i) / (n - 1) if n > 1 else 2.0
    pattern = DASHES[i % len(DASHES)]
    return width, f' stroke-dasharray="{pattern}"' if pattern else "", 1.0 if i == n - 1 else 0.55


def _legend(series: list[Series], x: float, y: float) -> list[str]:
    parts = []
    n = len(series)
    for i, s in enumerate(series):
        width, dash, opacity = _style(i, n)
        yy = y + 16 * i
        parts.append(
            f'<line x1="{x}" x2="{x + 26}" y1="{yy:.0f}" y2="{yy:.0f}" stroke="{s.color}" '
            f'stroke-width="{width:.1f}" opacity="{opacity}"{dash}/>'
        )
        parts.append(f'<text x="{x + 32}" y="{yy + 4:.0f}" font-size="11">{esc(s.name)}</text>')
    return parts


@dataclass
class Interval:
    """One row of an interval chart: a median and its p10..p90, or a note where there is none
    (a refused or skipped run)."""

    label: str
    color: str
    median: float | None = None
    p10: float | None = None
    p90: float | None = None
    note: str = ""
    group: str = ""
    """Rows of one group are drawn together under its name (the side-by-side page)."""


def interval_chart(
    chart_id: str, rows: list[Interval], x_label: str, note: str = "", width: int = 900
) -> str:
    """Horizontal bars from 0 to the median, a whisker p10..p90, the value at its end."""
    values = [v for r in rows for v in (r.median, r.p90) if v is not None and math.isfinite(v)]
    if not rows:
        return '<p class="muted">nothing to chart</p>'
    row_h, left, right, top = 20, 250, width - 80, 10
    groups = list(dict.fromkeys(r.group for r in rows))
    gap = 14 if len(groups) > 1 else 0
    bottom = top + row_h * len(rows) + gap * len(groups)
    height = bottom + 52 + (14 if note else 0)
    ticks = nice_ticks(0.0, max(values, default=1.0))
    sx = _Scale(0.0, ticks[-1], left, right)
    parts = [f'<svg id="{chart_id}" class="chart" width="{width}" height="{height}" role="img" {FONT}>']
    parts += _grid(sx, ticks, top, bottom, vertical=True)
    parts.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#555"/>')
    parts.append(
        f'<text x="{(left + right) / 2:.0f}" y="{bottom + 34}" font-size="12" text-anchor="middle">'
        f"{esc(x_label)}</text>"
    )
    y = top
    for group in groups:
        if gap:
            parts.append(f'<text x="4" y="{y + 11}" font-size="12" font-weight="600">{esc(group)}</text>')
            y += gap
        for r in (r for r in rows if r.group == group):
            parts += _interval(r, y, row_h, left, sx)
            y += row_h
    if note:
        parts.append(f'<text x="{left}" y="{height - 6}" font-size="10" fill="#777">{esc(note)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _interval(r: Interval, y: float, row_h: float, left: float, sx: _Scale) -> list[str]:
    mid = y + row_h / 2
    parts = [f'<text x="{left - 8}" y="{mid + 4:.1f}" font-size="12" text-anchor="end">{esc(r.label)}</text>']
    if r.median is None or not math.isfinite(r.median):
        parts.append(
            f'<text x="{left + 6}" y="{mid + 4:.1f}" font-size="11" fill="#a15c00">{esc(r.note)}</text>'
        )
        return parts
    parts.append(
        f'<rect x="{left}" y="{y + 3}" width="{sx(r.median) - left:.1f}" height="{row_h - 6}" '
        f'fill="{r.color}" opacity="0.75"><title>{esc(r.label)}: {r.median:.4g}</title></rect>'
    )
    end = r.median
    if r.p10 is not None and r.p90 is not None and math.isfinite(r.p10) and math.isfinite(r.p90):
        end = r.p90
        parts.append(
            f'<line x1="{sx(r.p10):.1f}" x2="{sx(r.p90):.1f}" y1="{mid:.1f}" y2="{mid:.1f}" stroke="#000"/>'
        )
        for v in (r.p10, r.p90):
            parts.append(
                f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{mid - 4:.1f}" y2="{mid + 4:.1f}" '
                'stroke="#000"/>'
            )
    parts.append(
        f'<text x="{sx(end) + 6:.1f}" y="{mid + 4:.1f}" font-size="11">{r.median:.4g}'
        f"{esc(' ' + r.note if r.note else '')}</text>"
    )
    return parts


@dataclass
class Stack:
    """One row of a stacked chart: its parts' values, drawn as shares of their sum; the note
    where it has none (a run that recorded no split)."""

    label: str
    parts: dict[str, float]
    note: str = ""


def stacked_chart(
    chart_id: str, rows: list[Stack], colors: dict[str, str], x_label: str, width: int = 900
) -> str:
    """A bar per row across 0..100%, each part its share in its colour, the parts' legend below.
    A part below zero (two clocks that disagree by a rounding) is drawn as nothing; its value
    stays in the bar's tooltip."""
    if not rows:
        return '<p class="muted">nothing to chart</p>'
    row_h, left, right, top = 20, 250, width - 40, 10
    bottom = top + row_h * len(rows)
    legend_y = bottom + 52
    height = legend_y + 16 * ((len(colors) + 2) // 3) + 4
    sx = _Scale(0.0, 100.0, left, right)
    parts = [f'<svg id="{chart_id}" class="chart" width="{width}" height="{height}" role="img" {FONT}>']
    parts += _grid(sx, [0, 25, 50, 75, 100], top, bottom, vertical=True)
    parts.append(
        f'<text x="{(left + right) / 2:.0f}" y="{bottom + 34}" font-size="12" text-anchor="middle">'
        f"{esc(x_label)}</text>"
    )
    for i, r in enumerate(rows):
        parts += _stack(r, top + i * row_h, row_h, left, sx, colors)
    for i, (name, color) in enumerate(colors.items()):
        x, y = left + (i % 3) * (right - left) / 3, legend_y + 16 * (i // 3)
        parts.append(f'<rect x="{x:.0f}" y="{y - 9}" width="12" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 18:.0f}" y="{y}" font-size="11">{esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _stack(r: Stack, y: float, row_h: float, left: float, sx: _Scale, colors: dict[str, str]) -> list[str]:
    mid = y + row_h / 2
    parts = [f'<text x="{left - 8}" y="{mid + 4:.1f}" font-size="12" text-anchor="end">{esc(r.label)}</text>']
    total = sum(v for v in r.parts.values() if v > 0)
    if total <= 0:
        parts.append(
            f'<text x="{left + 6}" y="{mid + 4:.1f}" font-size="11" fill="#a15c00">{esc(r.note)}</text>'
        )
        return parts
    start = 0.0
    for name, value in r.parts.items():
        share = max(value, 0.0) / total * 100
        parts.append(
            f'<rect x="{sx(start):.1f}" y="{y + 3}" width="{sx(start + share) - sx(start):.1f}" '
            f'height="{row_h - 6}" fill="{colors[name]}"><title>{esc(r.label)}: {esc(name)} '
            f"{value:.4g} s ({share:.1f}%)</title></rect>"
        )
        start += share
    return parts
