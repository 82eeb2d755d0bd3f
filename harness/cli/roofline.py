"""`harness roofline`: the large-matmul peak of each precision mode, stored for MFU."""

from __future__ import annotations

import argparse

from harness.bench.roofline import run_all
from harness.errors import HarnessError
from harness.precision.modes import BUILTIN


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("roofline", help="measure the large-matmul peak of each precision mode")
    r.add_argument(
        "--precisions",
        default=",".join(m.name for m in BUILTIN),
        help="comma-separated modes (default: all built-in)",
    )
    r.add_argument("--size", type=int, default=4096, help="matrix size N of the NxNxN matmul (default 4096)")
    r.add_argument("--repeats", type=int, default=10, help="timed matmuls per path (default 10)")
    r.add_argument("--cores", help="CPUs to bind to (default: every physical core of the first socket)")
    r.add_argument(
        "--allow-emulation",
        action="store_true",
        help="also measure modes whose CPU features are missing (marked emulated)",
    )


def run(args: argparse.Namespace) -> int:
    if args.size < 64 or args.repeats < 1:
        raise HarnessError("--size must be >= 64 and --repeats >= 1")
    names = [n for n in args.precisions.split(",") if n]
    return run_all(names, args.size, args.repeats, args.allow_emulation, args.cores)
