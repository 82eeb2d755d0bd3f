"""`harness report`: re-render a run set, put several side by side, or index a folder of them."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.flags import add_fields, from_args
from harness.reports.render import render
from harness.results.convergence import Criteria


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
    add_fields(rep.add_argument_group("how convergence is judged"), Criteria)


def run(args: argparse.Namespace) -> int:
    criteria: Criteria = from_args(Criteria, args)
    criteria.validate()
    return render(args.directories, args.output, criteria)
