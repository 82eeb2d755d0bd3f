"""Saved baselines and the machine fingerprint that says whether two run sets are comparable.

A baseline is a run set's tables (runs.csv, steps.csv) and machine.json kept under
BASELINES/NAME/ with a baseline.json naming its source and fingerprint. Throughput measured on
another CPU, core count or library build says nothing about a regression, so the gate refuses
to compare across fingerprints unless told to.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import HarnessError
from harness.files import folder_lock, write_error
from harness.gate.figures import load_judged
from harness.machine.platform import fingerprint
from harness.results.files import read_machine

BASELINE_FILE = "baseline.json"


def resolve(spec: str, baselines_dir: Path) -> Path:
    """--baseline names a folder, a runs.csv, or a baseline saved under baselines_dir."""
    path = Path(spec)
    if path.exists():
        return path
    saved = baselines_dir / spec
    if saved.is_dir():
        return saved
    known = (
        sorted(p.name for p in baselines_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if baselines_dir.is_dir()
        else []
    )  # a dot-folder is a save under way
    raise HarnessError(
        f"--baseline {spec}: no such folder or runs.csv, and no baseline of that name in "
        f"{baselines_dir} (saved: {', '.join(known) or 'none'})"
    )


def save(name: str, current: Path, baselines_dir: Path) -> Path:
    """Copy the current run set's tables under baselines_dir/name, replacing a baseline of that
    name only once the new one is complete.

    Each save stages in a folder of its own, so that saves of one name at once cannot mix their
    files or remove each other's; the swap (two renames) runs under a lock on baselines_dir, so
    that they take turns and the last one's baseline stays, whole."""
    if not name or "/" in name or name.startswith("."):
        raise HarnessError(f"--save-baseline {name!r}: expected a plain name")
    folder = current if current.is_dir() else current.parent
    for needed in ("runs.csv", "steps.csv", "machine.json"):
        if not (folder / needed).is_file():
            raise HarnessError(f"--save-baseline: {folder} has no {needed}; save a `harness compare` output")
    load_judged(folder / "runs.csv")  # the tables kept: a run set that cannot be read is no baseline
    info = {
        "name": name,
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(folder.resolve()),
        "fingerprint": fingerprint(read_machine(folder)),
    }
    target = baselines_dir / name
    if target.exists():
        # before any copy, under the lock: outside it another save's swap (target renamed away,
        # then the new one renamed in) can make a baseline look like a folder without its file
        with folder_lock(baselines_dir, "--save-baseline", wait=True):
            _refuse_foreign(target)
    try:
        baselines_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=baselines_dir))
    except OSError as exc:
        raise write_error(target, exc) from None
    old = staging.with_suffix(".old")
    try:
        for needed in ("runs.csv", "steps.csv", "machine.json"):
            shutil.copy2(folder / needed, staging / needed)
        (staging / BASELINE_FILE).write_text(json.dumps(info, indent=2) + "\n")
        with folder_lock(baselines_dir, "--save-baseline", wait=True):
            _refuse_foreign(target)  # another process may have made it since
            if target.exists():
                target.rename(old)
            staging.rename(target)
    except OSError as exc:
        raise write_error(target, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # left only where the save failed
    shutil.rmtree(old, ignore_errors=True)  # only once the new baseline is in its place
    return target


def _refuse_foreign(target: Path) -> None:
    """A folder the harness did not save is never replaced."""
    if target.exists() and not (target / BASELINE_FILE).is_file():
        raise HarnessError(
            f"--save-baseline {target.name}: {target} exists and is no saved baseline (no {BASELINE_FILE}); "
            "left as it is: choose another name or --baselines-dir"
        )
