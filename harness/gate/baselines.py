"""Saved baselines and the machine fingerprint that says whether two run sets are comparable.

A baseline is a run set's tables (runs.csv, steps.csv) and machine.json kept under
BASELINES/NAME/ with a baseline.json naming its source and fingerprint. Throughput measured on
another CPU, core count or library build says nothing about a regression, so the gate refuses
to compare across fingerprints unless told to.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import HarnessError
from harness.gate.figures import load_judged
from harness.machine.platform import fingerprint
from harness.results.files import read_machine


def resolve(spec: str, baselines_dir: Path) -> Path:
    """--baseline names a folder, a runs.csv, or a baseline saved under baselines_dir."""
    path = Path(spec)
    if path.exists():
        return path
    saved = baselines_dir / spec
    if saved.is_dir():
        return saved
    known = sorted(p.name for p in baselines_dir.iterdir() if p.is_dir()) if baselines_dir.is_dir() else []
    raise HarnessError(
        f"--baseline {spec}: no such folder or runs.csv, and no baseline of that name in "
        f"{baselines_dir} (saved: {', '.join(known) or 'none'})"
    )


def save(name: str, current: Path, baselines_dir: Path) -> Path:
    """Copy the current run set's tables under baselines_dir/name, replacing a baseline of that
    name only once the new one is complete."""
    if not name or "/" in name or name.startswith("."):
        raise HarnessError(f"--save-baseline {name!r}: expected a plain name")
    folder = current if current.is_dir() else current.parent
    for needed in ("runs.csv", "steps.csv", "machine.json"):
        if not (folder / needed).is_file():
            raise HarnessError(f"--save-baseline: {folder} has no {needed}; save a `harness compare` output")
    load_judged(folder / "runs.csv")  # the tables kept: a run set that cannot be read is no baseline
    machine = read_machine(folder)
    target = baselines_dir / name
    staging = baselines_dir / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for needed in ("runs.csv", "steps.csv", "machine.json"):
        shutil.copy2(folder / needed, staging / needed)
    info = {
        "name": name,
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(folder.resolve()),
        "fingerprint": fingerprint(machine),
    }
    (staging / "baseline.json").write_text(json.dumps(info, indent=2) + "\n")
    old = baselines_dir / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target
