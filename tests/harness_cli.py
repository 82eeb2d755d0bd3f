"""Run `python -m harness` as a real child process, as users and the compare command do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


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
    """(step records, eval records) of a run's metrics.jsonl."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return (
        [r for r in lines if "loss" in r and "eval_loss" not in r],
        [r for r in lines if "eval_loss" in r],
    )


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())
