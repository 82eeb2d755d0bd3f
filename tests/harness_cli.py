"""Run `python -m harness` as a real child process, as users do, or in this process (`call`)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness import cli
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


@dataclass
class Called:
    returncode: int
    stdout: str
    stderr: str


def call(capsys, *args: object) -> Called:
    """`python -m harness ARGS` in this process (commands that start no worker: report, gate):
    what a user would see, without a process's start-up."""
    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return Called(code, out.out, out.err)


def launch(capfd, *args: object) -> Called:
    """`python -m harness ARGS` with this process as the parent and its workers real processes:
    what they print is captured at the file descriptors. The parent's start-up (torch, CPU
    detection) is then paid once per test session instead of once per run."""
    capfd.readouterr()
    code = cli.main([str(a) for a in args])
    out = capfd.readouterr()
    return Called(code, out.out, out.err)
