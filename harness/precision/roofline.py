"""The roofline store: each precision mode's large-GEMM peak, the figure MFU is measured against,
and the memory bandwidth an optimizer streams at (harness.precision.stream) measured beside it:
together, a step's speed of light (harness.results.time_split).

`harness roofline` (harness.bench.roofline) measures the peaks (harness.precision.matmul_peak)
and saves them in $HARNESS_HOME/roofline.json under the machine's fingerprint, the thread count
and torch's version, where training workers and bench peer look them up.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.files import HOME_ENV, harness_home, writable_home, write_atomic, write_error

STORE_FILE = "roofline.json"


def store_path() -> Path:
    """$HARNESS_HOME/roofline.json."""
    return harness_home() / STORE_FILE


def writable_store() -> Path:
    """store_path(), refused in one line where no write could make it (a file on the way)."""
    return writable_home() / STORE_FILE


def store_key(machine_key: str, threads: int) -> str:
    return f"{machine_key} | {threads} threads | torch {torch.__version__}"


def _read(path: Path) -> dict[str, dict[str, dict]]:
    """The store's peaks by store key and mode ({} where there is none); HarnessError naming the
    file where it is not a store this harness wrote (truncated by a crash, edited, another file)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not text
        raise HarnessError(f"{path}: not a roofline store ({exc})") from None
    if not (
        isinstance(data, dict)
        and all(isinstance(peaks, dict) for peaks in data.values())
        and all(
            isinstance(peak, dict) and isinstance(peak.get("gflops"), int | float)
            for peaks in data.values()
            for peak in peaks.values()
        )
    ):
        raise HarnessError(f"{path}: not a roofline store (expected an object of peaks by machine and mode)")
    return data


def save(machine_key: str, peaks: dict[str, dict]) -> Path:
    """Add the peaks to the store. One that cannot be read is moved aside, not overwritten: the
    figures just measured are kept either way."""
    path = writable_store()
    try:
        data = _read(path)
    except HarnessError as exc:
        aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            path.replace(aside)
        except OSError as err:
            raise write_error(path, err) from None
        print(f"warning: {exc}; moved to {aside.name}, a new store started", file=sys.stderr, flush=True)
        data = {}
    for name, peak in peaks.items():
        data.setdefault(store_key(machine_key, peak["threads"]), {})[name] = peak
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # $HARNESS_HOME a file, or on a read-only file system
        raise HarnessError(f"{HOME_ENV} {path.parent}: cannot hold {path.name} ({exc.strerror})") from None
    write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


_WARNED: set[Path] = set()


def lookup(mode_name: str, machine_key: str, threads: int) -> dict | None:
    """The stored peak of a mode on this machine and thread count, if `harness roofline` ran. An
    unreadable store counts as none stored (said once per process): a run needs no roofline."""
    path = writable_store()
    try:
        data = _read(path)
    except HarnessError as exc:
        if path not in _WARNED:
            _WARNED.add(path)
            print(f"warning: {exc}; no roofline used (harness roofline replaces it)", file=sys.stderr)
        return None
    return data.get(store_key(machine_key, threads), {}).get(mode_name)
