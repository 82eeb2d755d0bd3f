"""Pieces every HTML page of the harness shares: style, escaping, number formats, tables."""

from __future__ import annotations

import html

import pandas as pd

from harness.results.records import Status

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}.bad{color:#b00020;font-weight:600}
.good{color:#0a7d2c;font-weight:600}.warn{color:#a15c00;font-weight:600}.muted{color:#777}
svg{background:#fff;border:1px solid #ddd;margin:6px 0}code{font-size:12px}
"""


def esc(v: object) -> str:
    return html.escape("-" if v is None or pd.isna(v) else str(v))


def num(v: object, fmt: str) -> str:
    if v is None or pd.isna(v):
        return "-"
    return format(v, fmt)


STATUS_CLASS = {
    Status.OK: "good",
    Status.DIVERGED: "bad",
    Status.INVALID: "bad",
    Status.FAILED: "bad",
    Status.CRASHED: "bad",
    Status.TIMEOUT: "bad",
    Status.REFUSED: "warn",
    Status.SKIPPED: "warn",
}


def table(df: pd.DataFrame, columns: list[tuple[str, str, str]]) -> str:
    """An HTML table of df's columns given as (key, title, format); format "s" is text, and a
    `status` column is coloured by its value."""
    head = "".join(f'<th class="{"l" if f == "s" else ""}">{esc(title)}</th>' for _, title, f in columns)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for key, _, fmt in columns:
            value = r[key]
            if fmt == "s":
                cls = STATUS_CLASS.get(str(value), "") if key == "status" else ""
                cells.append(f'<td class="l {cls}">{esc(value)}</td>')
            else:
                cells.append(f"<td>{num(value, fmt)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"
