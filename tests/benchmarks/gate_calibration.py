"""How often the gate cries wolf, and how small a slowdown it catches, measured on real runs.

    python tests/benchmarks/gate_calibration.py measure OUT [--pairs 10 --seeds 5 --steps 100 --slow 1.1]
    python tests/benchmarks/gate_calibration.py judge OUT [--scaled 1.1,1.2] [gate flags: --max-regression 5%]

`measure` runs PAIRS + 1 clean run sets and PAIRS slowed ones (HARNESS_FAULT=slow=F@1: every
step F times as long), interleaved in time: clean-0, slow-0, clean-1, slow-1, ... Each set is a
`harness compare --preset smoke --phases 1 --precisions fp32 --seeds R`. `judge` runs the
gate on every A/A pair (clean-k against clean-k+1, as a nightly job compares with the night
before) and every slowed pair (clean-k against slow-k), and prints the false alarms and the
catches with each pair's change and p-value. Judging is cheap: one measurement serves many flags.
`--scaled F` judges the A/A pairs again with every current run's throughput divided by F: the
measured noise between sets with an exact slowdown on top, for slowdowns the run did not inject.
`--bracket` takes as baseline the clean sets just before and after the current one (A-B-A, as a
CI job that runs the baseline build around the new one would): the drift of the machine between
sets then falls on both sides.
Run nothing else meanwhile; a contended set is counted apart (gate exit 3).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from harness.results.files import read_result, write_result


def harness(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "HARNESS_FAULT"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True, env=full_env
    )


def measure(out: Path, pairs: int, repeats: int, steps: int, slow: float) -> None:
    plan = [(f"clean-{k}", None) for k in range(pairs + 1)]
    order = []
    for k, clean in enumerate(plan):
        order.append(clean)
        if k < pairs:
            order.append((f"slow-{k}", f"slow={slow}@1"))
    for i, (name, fault) in enumerate(order, start=1):
        if (out / name / "runs.csv").is_file():
            continue  # measured by an earlier, interrupted call
        proc = harness(
            *("compare", "--preset", "smoke", "--phases", "1", "--precisions", "fp32", "--backends", "stock"),
            *("--seeds", repeats, "--steps", steps, "--output", out / name),
            env={"HARNESS_FAULT": fault} if fault else None,
        )
        if proc.returncode != 0:
            sys.exit(f"{name}: compare exited {proc.returncode}: {proc.stderr[-2000:]}")
        print(f"[{i}/{len(order)}] {name} measured", file=sys.stderr, flush=True)
    (out / "calibration.json").write_text(
        json.dumps({"pairs": pairs, "repeats": repeats, "steps": steps, "slow": slow}) + "\n"
    )


def scaled_copy(source: Path, target: Path, factor: float) -> None:
    """source's runs as if every one had been `factor` times slower."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("gate*", "report.html"))
    for run_dir in (target / "runs").iterdir():
        result = read_result(run_dir)
        if result is not None and result.throughput_seq_per_s is not None:
            scaled = {
                key: getattr(result, key) / factor
                for key in ("throughput_seq_per_s", "throughput_p10", "throughput_p90")
            }
            write_result(run_dir, replace(result, **scaled))
    (target / "runs.csv").unlink()  # the gate reads the compare folder, recomputing the tables


def pairs_of(out: Path, pairs: int, slow: float, scaled: list[float], bracket: bool) -> list[tuple]:
    """(kind, baseline folders, current folder) of every pair to judge."""
    clean = [out / f"clean-{k}" for k in range(pairs + 1)]
    # A/A: against the set before it, or bracketed by the sets before and after it
    last = pairs - 1 if bracket else pairs
    a_a = [([clean[k - 1], clean[k + 1]] if bracket else [clean[k - 1]], k) for k in range(1, last + 1)]
    found = [("A/A", b, clean[k]) for b, k in a_a]
    for k in range(pairs):
        base = [clean[k], clean[k + 1]] if bracket else [clean[k]]
        found.append((f"slow={slow}", base, out / f"slow-{k}"))
    for factor in scaled:
        for b, k in a_a:
            target = out / f"scaled-{factor}-{k}"
            if not target.is_dir():
                scaled_copy(clean[k], target, factor)
            found.append((f"A/A/{factor}", b, target))
    return found


def judge(out: Path, scaled: list[float], bracket: bool, gate_flags: list[str]) -> None:
    settings = json.loads((out / "calibration.json").read_text())
    found = pairs_of(out, settings["pairs"], settings["slow"], scaled, bracket)
    outcome: dict[str, list[int]] = {}
    design = (
        "bracketed: baseline = the clean sets before and after" if bracket else "baseline = the set before"
    )
    print(f"{settings}; {design}; gate flags: {' '.join(gate_flags) or '(defaults)'}")
    for i, (kind, baselines, cur) in enumerate(found):
        report = out / "gates" / f"{i}"
        report.parent.mkdir(exist_ok=True)
        proc = harness(
            *("gate", "--baseline", *baselines, "--current", cur, "--baselines-dir", out / "saved"),
            *("--json", f"{report}.json", "--markdown", f"{report}.md", *gate_flags),
        )
        if proc.returncode == 2:
            sys.exit(proc.stderr.strip())
        outcome.setdefault(kind, []).append(proc.returncode)
        check = next(
            c for c in json.loads(Path(f"{report}.json").read_text())["checks"] if c["kind"] == "throughput"
        )
        names = "+".join(b.name for b in baselines)
        print(f"{kind:<10} {names} -> {cur.name}: exit {proc.returncode}  {check['message']}")
    print()
    for kind, codes in outcome.items():
        what = "false alarms" if kind == "A/A" else "caught"
        print(
            f"{kind:<10} {what}: {codes.count(1)} of {len(codes)} pairs "
            f"(contended, not judged: {codes.count(3)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("out", type=Path)
    m.add_argument("--pairs", type=int, default=10)
    m.add_argument("--seeds", type=int, default=5)
    m.add_argument("--steps", type=int, default=100)
    m.add_argument("--slow", type=float, default=1.1)
    j = sub.add_parser("judge")
    j.add_argument("out", type=Path)
    j.add_argument("--scaled", default="", help="comma-separated factors, e.g. 1.1,1.2")
    j.add_argument("--bracket", action="store_true", help="baseline: the clean sets before and after")
    args, rest = parser.parse_known_args()
    if args.command == "measure":
        measure(args.out, args.pairs, args.seeds, args.steps, args.slow)
    else:
        judge(args.out, [float(f) for f in args.scaled.split(",") if f], args.bracket, rest)


if __name__ == "__main__":
    main()
