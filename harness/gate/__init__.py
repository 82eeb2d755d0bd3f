"""`harness gate`: fail a CI build on a real regression, stay quiet on noise.

Exit codes: 0 every check passed, 1 a check failed, 2 bad input or usage (including comparing
run sets from different machines without --allow-machine-mismatch).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from harness.errors import HarnessError
from harness.files import write_atomic
from harness.gate.baselines import mismatches
from harness.gate.checks import Check, GateConfig, convergence, speedups, throughput, validity
from harness.reports.runsets import RunSet

EXIT_FAILED = 1


def run_checks(
    baseline: RunSet, current: RunSet, cfg: GateConfig, allow_mismatch: bool
) -> tuple[list[Check], list[str]]:
    """All checks, and the machine differences that were allowed through."""
    differences = mismatches(baseline.machine, current.machine)
    if differences and not allow_mismatch:
        raise HarnessError(
            f"--baseline {baseline.path} was measured on another machine or build "
            f"({'; '.join(differences)}); --allow-machine-mismatch compares anyway"
        )
    return (
        [
            *validity(current),
            *throughput(baseline, current, cfg),
            *speedups(current, cfg),
            *convergence(baseline, current, cfg),
        ],
        differences,
    )


def _finite(value: object) -> object:
    """JSON has no NaN: an unmeasured figure is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def markdown(checks: list[Check], baseline: RunSet, current: RunSet, differences: list[str]) -> str:
    failed = [c for c in checks if not c.passed]
    head = (
        f"## harness gate: FAILED, {len(failed)} of {len(checks)} checks"
        if failed
        else f"## harness gate: passed, {len(checks)} checks"
    )
    lines = [
        head,
        "",
        f"Baseline `{baseline.path}` ({baseline.machine.get('cpu_model', 'unknown CPU')}), "
        f"current `{current.path}` ({current.machine.get('cpu_model', 'unknown CPU')}).",
    ]
    if differences:
        lines += ["", f"Machines differ (allowed by --allow-machine-mismatch): {'; '.join(differences)}."]

    def table(rows: list[Check]) -> list[str]:
        out = ["| check | run | result | figures |", "| --- | --- | --- | --- |"]
        out += [
            f"| {c.kind} | {c.run} | {'pass' if c.passed else '**FAIL**'} | {c.message.replace('|', '/')} |"
            for c in rows
        ]
        return out

    if failed:
        lines += ["", "### Failed", "", *table(failed)]
    passed = [c for c in checks if c.passed]
    if passed:
        lines += ["", "### Passed", "", *table(passed)]
    return "\n".join(lines) + "\n"


def terminal_table(checks: list[Check]) -> str:
    width = max((len(c.run) for c in checks), default=10)
    return "\n".join(
        f"{'PASS' if c.passed else 'FAIL'}  {c.kind:<20} {c.run:<{width}}  {c.message}" for c in checks
    )


def write_outputs(
    checks: list[Check],
    baseline: RunSet,
    current: RunSet,
    differences: list[str],
    md_path: Path,
    json_path: Path,
) -> None:
    write_atomic(md_path, markdown(checks, baseline, current, differences))
    data = {
        "passed": all(c.passed for c in checks),
        "baseline": str(baseline.path),
        "current": str(current.path),
        "machine_differences": differences,
        "checks": [asdict(c) for c in checks],
    }
    write_atomic(json_path, json.dumps(_finite(data), indent=2, default=str) + "\n")
