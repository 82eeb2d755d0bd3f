"""`harness gate`: fail a CI build on a real regression, stay quiet on noise.

Exit codes: 0 every check passed, 1 a check failed, 2 bad input or usage (including comparing
run sets from different machines without --allow-machine-mismatch), 3 no check failed but the
throughput of a configuration was not judged because its runs shared their cores (contended):
run again on a quiet machine, 70 (harness.errors.INTERNAL_ERROR_EXIT) the harness itself failed:
no verdict.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.files import write_atomic
from harness.gate.baselines import resolve, save
from harness.gate.checks import (
    Check,
    convergence,
    speedups,
    throughput,
    validity,
)
from harness.gate.config import GateConfig
from harness.gate.figures import load_judged
from harness.results.runsets import RunSet, merge_runsets, mismatches, name_sets

EXIT_FAILED, EXIT_CONTENDED = 1, 3


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
    contended = [c for c in checks if c.figures.get("contended")]
    if failed:
        head = f"## harness gate: FAILED, {len(failed)} of {len(checks)} checks"
    elif contended:
        head = f"## harness gate: NOT JUDGED, {len(contended)} throughput checks on contended runs"
    else:
        head = f"## harness gate: passed, {len(checks)} checks"
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


@dataclass(frozen=True)
class GateRequest:
    """Which run sets the gate judges, and where it writes."""

    current: list[Path]
    """compare --output folders or their runs.csv, judged as one run set."""
    baseline: list[str] | None
    """Folders, runs.csv files or saved baselines' names, judged as one run set."""
    baselines_dir: Path
    """Where saved baselines live."""
    save_baseline: str | None = None
    """Keep --current as a baseline of this name (after the gate passes, with a baseline)."""
    allow_machine_mismatch: bool = False
    markdown: Path | None = None
    json: Path | None = None


def gate(args: GateRequest, cfg: GateConfig) -> int:
    """Judge the current run set against the baseline; returns the gate's exit code."""
    cfg.validate()
    if args.baseline is None and args.save_baseline is None:
        raise HarnessError(
            "gate: give --baseline to compare with, --save-baseline NAME to keep "
            "--current as a baseline, or both"
        )
    if args.save_baseline and len(args.current) > 1:
        raise HarnessError("--save-baseline keeps one run set: give a single --current")
    if args.baseline is None:
        print(f"saved baseline {save(args.save_baseline, args.current[0], args.baselines_dir)}")
        return 0
    baseline, current = name_sets(
        [
            merge_runsets("--baseline", [load_judged(resolve(b, args.baselines_dir)) for b in args.baseline]),
            merge_runsets("--current", [load_judged(c) for c in args.current]),
        ]
    )
    checks, differences = run_checks(baseline, current, cfg, args.allow_machine_mismatch)
    folder = args.current[0] if args.current[0].is_dir() else args.current[0].parent
    md_path, json_path = args.markdown or folder / "gate.md", args.json or folder / "gate.json"
    write_outputs(checks, baseline, current, differences, md_path, json_path)
    print(terminal_table(checks))
    failed = [c for c in checks if not c.passed]
    contended = [c for c in checks if c.figures.get("contended")]
    verdict = "FAILED" if failed else ("NOT JUDGED (contended)" if contended else "passed")
    print(
        f"\ngate {verdict}: {len(checks) - len(failed)} of {len(checks)} checks passed"
        + (f", {len(contended)} throughput checks not judged" if contended else "")
        + f"; wrote {md_path} and {json_path}"
    )
    if failed:
        return EXIT_FAILED
    if contended:
        print(
            f"gate: a contended run set's throughput says nothing; run it again on a quiet machine "
            f"(exit {EXIT_CONTENDED})"
        )
        return EXIT_CONTENDED
    if args.save_baseline:
        print(f"saved baseline {save(args.save_baseline, args.current[0], args.baselines_dir)}")
    return 0
