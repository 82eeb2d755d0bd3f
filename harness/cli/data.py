"""`harness data synth`: synthetic pre-training data in the MLCommons TFRecord layout."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.cli.flags import add_fields, from_args
from harness.datasets.synth import SynthSpec, synthesize


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make or inspect pre-training data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser("synth", help="write synthetic MLCommons-format TFRecords")
    s.add_argument("--output", type=Path, required=True, help="DATASET_DIR to write")
    add_fields(s, SynthSpec)
    s.add_argument(
        "--reuse",
        action="store_true",
        help="keep a data set already at --output if it was written with the same settings",
    )


def run(args: argparse.Namespace) -> int:
    print(json.dumps(synthesize(args.output, from_args(SynthSpec, args), reuse=args.reuse), indent=2))
    return 0
