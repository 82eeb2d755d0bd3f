"""Starting workers: one process, torchrun's ranks, or K instances, behind one call.

`start_training` admits the mode, resolves the cores and writes the job file; the launcher the
options choose starts the worker(s) through harness.launch.runner. `--instances K` cuts the
cores into K equal, disjoint sets, as torch.backends.xeon.run_cpu does for throughput runs: each
instance trains on its own (its own seed, its own OUTPUT/instance-<k>/), all started together,
and OUTPUT then holds their aggregate (harness.results.instances), so reports and gates read an
instance run like any other.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.launch.admission import admitted
from harness.launch.environment import worker_environment
from harness.launch.job import Job, WorkerContext, write_job
from harness.launch.ranks import RankLayout
from harness.launch.runner import Child, Exit, Log, run
from harness.machine.cores import resolve_cores, split_cores
from harness.precision.modes import PrecisionMode
from harness.train.backends import check_available
from harness.train.config import TrainConfig

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


def start_training(
    cfg: TrainConfig,
    mode: PrecisionMode,
    options: LaunchOptions,
    log: Log | None = None,
    timeout: float | None = None,
) -> Exit:
    """Check that the run may start here, then run its worker(s) to the end."""
    from harness.machine.platform import detect

    cfg.validate()
    check_available(cfg.backend)
    options.layout.validate()
    cores = resolve_cores(options.cores)
    context = admitted(mode, detect(), cores, options.allow_emulation, "--precision")
    layout = options.layout
    if layout.nproc_per_node > len(cores):
        raise HarnessError(
            f"--nproc-per-node {layout.nproc_per_node}: more ranks than the {len(cores)} "
            f"cores this run may use ({','.join(map(str, cores))}); each rank needs one"
        )
    with tempfile.TemporaryDirectory(prefix="harness-job-") as tmp:
        if options.instances != 1:
            return _instances(cfg, mode, context, options, Path(tmp), log, timeout)
        job = write_job(Path(tmp) / "job.json", Job("train", mode, context, cfg.to_dict()))
        command = layout.torchrun(job) if layout.uses_torchrun else [*WORKER, str(job)]
        env = worker_environment(mode, len(cores), options.system_malloc)
        return run([Child(command, env, cores)], log, timeout)


def _instances(
    cfg: TrainConfig,
    mode: PrecisionMode,
    context: WorkerContext,
    options: LaunchOptions,
    tmp: Path,
    log: Log | None,
    timeout: float | None,
) -> Exit:
    from harness.results.instances import aggregate

    if options.layout.world_size > 1:
        raise HarnessError("--instances runs independent copies; it does not combine with --nproc-per-node")
    cfg.refuse_previous_run()
    core_sets = split_cores(context.cores, options.instances)
    cfg.output.mkdir(parents=True, exist_ok=True)
    children = []
    for i, mine in enumerate(core_sets):
        mine_cfg = replace(cfg, output=cfg.output / f"instance-{i}", seed=cfg.seed + i)
        job = Job("train", mode, replace(context, cores=tuple(mine)), mine_cfg.to_dict())
        env = worker_environment(mode, len(mine), options.system_malloc)
        children.append(Child([*WORKER, str(write_job(tmp / f"job-{i}.json", job))], env, mine))
    done = run(children, log, timeout)
    aggregate(cfg.output, options.instances)
    return done


def run_task(
    task: str, mode: PrecisionMode, context: WorkerContext, settings: dict[str, Any], system_malloc: bool
) -> dict:
    """One measuring worker (roofline, peer) with the mode's environment; returns what it wrote."""
    with tempfile.TemporaryDirectory(prefix="harness-job-") as tmp:
        # the task's figures: a file of its own, not a training run's result
        result = Path(tmp) / "figures.json"
        job = write_job(Path(tmp) / "job.json", Job(task, mode, context, settings, str(result)))
        env = worker_environment(mode, len(context.cores), system_malloc)
        done = run([Child([*WORKER, str(job)], env, context.cores)])
        if done.code != 0 or not result.is_file():
            raise HarnessError(f"{task} worker for {mode.name} exited with {done.code}")
        return json.loads(result.read_text())
