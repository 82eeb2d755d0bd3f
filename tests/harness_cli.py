"""Run `python -m harness` as a real child process, as users and the compare command do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.results.files import metrics_records, read_result
from harness.results.records import is_eval


def run(*args: object, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    # A fault injected into the test process's own environment must not leak into every run.
    full_env = {k: v for k, v in os.environ.items() if k != "HARNESS_FAULT"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(step records, eval records) of a run's metrics file, as written."""
    lines = metrics_records(run_dir)
    return [r for r in lines if not is_eval(r)], [r for r in lines if is_eval(r)]


def result(run_dir: Path) -> dict:
    data = read_result(run_dir)
    assert data is not None, f"{run_dir}: no result"
    return data
