"""`harness gate`: fail a CI build on a real throughput or convergence regression."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.flags import add_fields, from_args
from harness.gate.config import GateConfig, SpeedupFloor, parse_max_regression
from harness.gate.judge import GateRequest, gate


def add_parser(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "gate",
        help="fail on a real throughput or convergence regression against a baseline",
        description="Compare a run set with a baseline. Exit 0: every check passed; 1: a check "
        "failed; 2: bad input or usage, or the machines differ; 3: nothing failed, but a contended "
        "run's throughput was not judged; 70: the harness itself failed (a bug; traceback), no verdict.",
    )
    g.add_argument(
        "--current",
        type=Path,
        nargs="+",
        required=True,
        help="compare --output folder or its runs.csv; several are judged as one run set",
    )
    g.add_argument(
        "--baseline",
        nargs="+",
        help="compare --output folder, its runs.csv, or a saved baseline's name; several are judged as "
        "one run set (interleave them in time with the current ones)",
    )
    g.add_argument(
        "--baselines-dir",
        type=Path,
        default=Path("baselines"),
        help="where --save-baseline keeps baselines and --baseline NAME finds them",
    )
    g.add_argument(
        "--save-baseline",
        metavar="NAME",
        help="keep --current as baseline NAME (after the gate passes, when --baseline is given)",
    )
    g.add_argument(
        "--max-regression",
        action="append",
        default=[],
        metavar="[MODE=]SHARE",
        help=f"largest tolerated throughput drop, e.g. 5% or bf16=8% (default "
        f"{GateConfig.max_regression:.0%}); repeatable".replace("%", "%%"),
    )
    g.add_argument(
        "--min-speedup",
        action="append",
        default=[],
        metavar="MODE/MODE=FACTOR",
        help="speed-up floor inside the current run set, e.g. bf16/fp32=1.5; repeatable",
    )
    add_fields(g, GateConfig, only=("alpha", "loss_tolerance", "accuracy_tolerance", "allow_missing"))
    g.add_argument(
        "--allow-machine-mismatch",
        action="store_true",
        help="compare run sets whose CPU, cores or library builds differ",
    )
    g.add_argument(
        "--markdown",
        type=Path,
        help="Markdown summary to write (default: gate.md beside --current's runs.csv)",
    )
    g.add_argument("--json", type=Path, help="JSON result to write (default: gate.json beside it)")


def run(args: argparse.Namespace) -> int:
    general, per_mode = GateConfig.max_regression, {}
    for spec in args.max_regression:
        mode, share = parse_max_regression(spec)
        if mode:
            per_mode[mode] = share
        else:
            general = share
    # Every field the flags fill by hand is given here: from_args would otherwise copy the raw
    # --max-regression list into the float field of the same name.
    cfg: GateConfig = from_args(
        GateConfig,
        args,
        max_regression=general,
        max_regression_for=per_mode,
        min_speedup=[SpeedupFloor.parse(s) for s in args.min_speedup],
    )
    return gate(from_args(GateRequest, args), cfg)
