"""The one chart module: round ticks, smoothing that does not lag, coinciding lines that stay
visible, rows without a figure that say why, and no missing value printed as <NA>."""

import re

import pytest

from harness import cli
from harness.reports.charts import (
    Interval,
    Series,
    centred_mean,
    interval_chart,
    line_chart,
    nice_ticks,
    smoothing_window,
)


@pytest.mark.parametrize(
    ("lo", "hi", "ticks"),
    [
        (0, 61.7, [0, 20, 40, 60, 80]),
        (9.31, 11.02, [9, 9.5, 10, 10.5, 11, 11.5]),
        (1, 400, [0, 100, 200, 300, 400]),
        (5, 5, [4.5, 5, 5.5]),
    ],
)
def test_ticks_are_round_and_cover_the_data(lo, hi, ticks):
    assert nice_ticks(lo, hi) == pytest.approx(ticks)


def test_the_smoothed_curve_does_not_lag_a_falling_loss():
    loss = [10 - 0.01 * i for i in range(400)]  # a straight fall: a centred mean reproduces it
    smooth = centred_mean(loss, smoothing_window(len(loss)))
    assert smooth[200] == pytest.approx(loss[200])
    assert abs(smooth[-1] - loss[-1]) < 0.25  # only the last half-window leans back
    assert centred_mean([1.0, 5.0], smoothing_window(2)) == [1.0, 5.0]  # a short run is not smoothed


def test_coinciding_lines_stay_apart_in_width_and_dash():
    same = dict(xs=[1, 2, 3], ys=[10.0, 9.0, 8.5])
    svg = line_chart(
        "c", [Series("fp32", "#111", **same), Series("avx-fp32", "#222", **same)], "step", "loss"
    )
    lines = re.findall(
        r'<polyline [^>]*stroke="(#\d+)" stroke-width="([\d.]+)"[^>]*?( stroke-dasharray="[^"]+")?>', svg
    )
    (_, w1, d1), (_, w2, d2) = lines
    assert float(w1) > float(w2) and d1 == "" and d2  # the first wide underneath, the second dashed on top
    assert svg.count("<text") > 8 and ">step<" in svg and ">loss<" in svg  # ticks and axis labels


def test_a_row_without_a_figure_says_why():
    svg = interval_chart(
        "t",
        [
            Interval("p1-fp32-r0", "#111", 50.0, 45.0, 55.0, group="phase 1"),
            Interval("p1-bf16-r0", "#222", note="refused", group="phase 1"),
            Interval("p2-bf16-r0", "#222", note="skipped", group="phase 2"),
        ],
        "sequences/s",
    )
    assert ">refused<" in svg and ">skipped<" in svg and ">phase 2<" in svg and ">sequences/s<" in svg


def test_no_page_prints_a_missing_value_as_na(runsets, tmp_path, capsys):
    assert cli.main(["report", str(runsets / "report")]) == 0
    side = tmp_path / "side.html"
    assert (
        cli.main(["report", str(runsets / "baseline"), str(runsets / "report"), "--output", str(side)]) == 0
    )
    for page in (runsets / "report" / "report.html", side):
        text = page.read_text()
        assert "<NA>" not in text and "&lt;NA&gt;" not in text and "nan" not in text.lower().split(), page
    # the crashed phase-2 run is labelled on the chart, not left out
    assert re.search(r"p2-avx-fp32-r0</text>.*?crashed", (runsets / "report" / "report.html").read_text())
