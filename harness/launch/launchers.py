"""Starting workers: one process, torchrun's ranks, or several together, behind one call.

A launcher is handed the jobs (the task function, the mode, the cores and the settings) and
starts one worker per job through harness.launch.runner, each bound to its cores with its mode's
environment; it never knows what the task computes.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.launch.environment import worker_environment
from harness.launch.job import Job, Task, WorkerContext, write_job
from harness.launch.ranks import RankLayout
from harness.launch.runner import Child, Exit, Log, run
from harness.precision.modes import PrecisionMode

WORKER = [sys.executable, "-m", "harness.launch.worker"]


@dataclass(frozen=True)
class LaunchOptions:
    """How a run is started; none of it changes what the run computes, so it is not in TrainConfig."""

    cores: str | None = None
    """CPUs to bind the run to, e.g. 0-3 (default: every physical core of the first socket); one
    OpenMP thread per CPU."""
    allow_emulation: bool = False
    """Run a mode whose CPU features are missing; its results are marked emulated."""
    instances: int = 1
    """K independent copies on disjoint core sets, started together; OUTPUT holds their aggregate
    (throughput summed) and instance-<k>/ each one."""
    system_malloc: bool = False
    """Leave glibc malloc at its defaults, which return freed blocks over 128 KiB to the OS so that
    every step faults them in again (default: keep freed memory)."""
    layout: RankLayout = field(default_factory=RankLayout)
    """Ranks per node and nodes (torchrun)."""


def start(
    jobs: Sequence[Job],
    folder: Path,
    options: LaunchOptions,
    log: Log | None = None,
    timeout: float | None = None,
) -> Exit:
    """Run a worker per job, all started together, each on its context's cores (torchrun's ranks
    where options.layout asks for them); the job files are written to `folder`."""
    children = []
    for i, job in enumerate(jobs):
        path = write_job(folder / ("job.json" if len(jobs) == 1 else f"job-{i}.json"), job)
        command = options.layout.torchrun(path) if options.layout.uses_torchrun else [*WORKER, str(path)]
        env = worker_environment(job.mode, len(job.context.cores), options.system_malloc)
        children.append(Child(command, env, job.context.cores))
    return run(children, log, timeout)


def run_task(
    task: Task, mode: PrecisionMode, context: WorkerContext, settings: dict[str, Any], system_malloc: bool
) -> dict:
    """One measuring worker (roofline, peer) with the mode's environment; returns the figures its
    task wrote (harness.launch.job.write_figures)."""
    with tempfile.TemporaryDirectory(prefix="harness-job-") as tmp:
        # the task's figures: a file of its own, not a training run's result
        result = Path(tmp) / "figures.json"
        job = Job(task, mode, context, settings, str(result))
        done = start([job], Path(tmp), LaunchOptions(system_malloc=system_malloc))
        if done.code != 0 or not result.is_file():
            raise HarnessError(f"{task.__name__} for {mode.name}: its worker exited with {done.code}")
        return json.loads(result.read_text())
