"""`harness detect`: what this CPU and OS offer, and how each precision mode runs here."""

from __future__ import annotations

import argparse
import dataclasses
import json

from harness.machine import platform
from harness.precision.modes import admit, format_admissions, load_modes


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("detect", help="what this CPU and OS offer (CPUID, AMX permission, cores)")
    d.add_argument("--json", action="store_true", help="print a JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    here = platform.detect()
    if args.json:
        modes = {m.name: dataclasses.asdict(admit(m, here)) for m in load_modes().values()}
        print(json.dumps({**platform.as_dict(here), "modes": modes}, indent=2))
    else:
        print(f"{platform.format_table(here)}\n\n{format_admissions(here)}")
    return 0
