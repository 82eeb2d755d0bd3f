"""`harness report`: re-render a run set, put several side by side, or index a folder of them."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.results.records import LOSS_TOLERANCE


def add_parser(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser(
        "report",
        help="re-render a comparison's report, compare run sets side by side, or index a folder of run sets",
        description="One compare output: re-render its runs.csv, steps.csv and report.html. Several "
        "(folders or runs.csv): one page with them side by side. A folder holding run sets: "
        "index.html with throughput over time.",
    )
    rep.add_argument(
        "directories",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="compare --output folders, their runs.csv, or one folder of run sets",
    )
    rep.add_argument(
        "--output",
        type=Path,
        help="page to write for several run sets (default side-by-side.html) or a folder of them "
        "(default FOLDER/index.html)",
    )
    rep.add_argument(
        "--loss-tolerance",
        type=float,
        default=LOSS_TOLERANCE,
        help="a precision converges like fp32 when its final loss is within this share of fp32's "
        f"(default {LOSS_TOLERANCE})",
    )


def run(args: argparse.Namespace) -> int:
    from harness.reports.render import render

    return render(args.directories, args.output, args.loss_tolerance)
