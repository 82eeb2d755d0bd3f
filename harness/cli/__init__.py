"""`python -m harness`: the command line, one module per command.

Each command module has `add_parser(subparsers)` and `run(args) -> exit code`; the flags of a
config come from its dataclass (harness.cli.flags), so a default is declared once.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from harness.cli import bench, compare, convert, data, detect, gate, report, roofline, train
from harness.errors import INTERNAL_ERROR_EXIT, HarnessError
from harness.results.records import Status

COMMANDS = {
    "detect": detect,
    "train": train,
    "data": data,
    "compare": compare,
    "report": report,
    "gate": gate,
    "bench": bench,
    "roofline": roofline,
    "convert-checkpoint": convert,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness", description="BERT-Large pre-training benchmark harness for x86 CPUs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # a Ctrl-C before a worker runs (a worker's own ends it as interrupted)
        print("harness: interrupted", file=sys.stderr)
        return Status.INTERRUPTED.exit_code
    except Exception:  # Python's own exit code, 1, is the gate's "a check failed"
        traceback.print_exc()
        print(
            f"harness: internal error in `{args.command}` (traceback above): a bug in the harness, "
            f"no verdict (exit {INTERNAL_ERROR_EXIT})",
            file=sys.stderr,
        )
        return INTERNAL_ERROR_EXIT
