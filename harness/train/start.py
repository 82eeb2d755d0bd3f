"""Starting a training run: `harness train`, each run of `harness compare`, bench peer's own.

`start_training` admits the mode, resolves the cores and hands harness.launch the train task.
`--instances K` cuts the cores into K equal, disjoint sets, as torch.backends.xeon.run_cpu does for
throughput runs: each instance trains on its own (its own seed, its own OUTPUT/instance-<k>/), all
started together, and OUTPUT then holds their aggregate (harness.results.instances), so reports
and gates read an instance run like any other.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from harness.errors import HarnessError
from harness.launch.admission import admitted
from harness.launch.job import Job, WorkerContext
from harness.launch.launchers import LaunchOptions, start
from harness.launch.runner import Exit, Log
from harness.machine import platform
from harness.machine.cores import resolve_cores, split_cores
from harness.precision.modes import PrecisionMode
from harness.results.instances import aggregate
from harness.train.backends import check_available, mode_problem
from harness.train.config import TrainConfig
from harness.train.trainer import run_job


def start_training(
    cfg: TrainConfig,
    mode: PrecisionMode,
    options: LaunchOptions,
    log: Log | None = None,
    timeout: float | None = None,
) -> Exit:
    """Check that the run may start here, then run its worker(s) to the end."""
    cfg.validate()
    check_available(cfg.backend)
    if problem := mode_problem(cfg.backend, mode):
        raise HarnessError(problem)
    options.layout.validate()
    cores = resolve_cores(options.cores)
    context = admitted(mode, platform.detect(), cores, options.allow_emulation, "--precision")
    layout = options.layout
    if layout.nproc_per_node > len(cores):
        raise HarnessError(
            f"--nproc-per-node {layout.nproc_per_node}: more ranks than the {len(cores)} "
            f"cores this run may use ({','.join(map(str, cores))}); each rank needs one"
        )
    with tempfile.TemporaryDirectory(prefix="harness-job-") as tmp:
        if options.instances != 1:
            return _instances(cfg, mode, context, options, Path(tmp), log, timeout)
        return start([Job(run_job, mode, context, cfg.to_dict())], Path(tmp), options, log, timeout)


def _instances(
    cfg: TrainConfig,
    mode: PrecisionMode,
    context: WorkerContext,
    options: LaunchOptions,
    tmp: Path,
    log: Log | None,
    timeout: float | None,
) -> Exit:
    if options.layout.world_size > 1:
        raise HarnessError("--instances runs independent copies; it does not combine with --nproc-per-node")
    cfg.refuse_previous_run()
    core_sets = split_cores(context.cores, options.instances)
    cfg.output.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i, mine in enumerate(core_sets):
        mine_cfg = replace(cfg, output=cfg.output / f"instance-{i}", seed=cfg.seed + i)
        jobs.append(Job(run_job, mode, replace(context, cores=tuple(mine)), mine_cfg.to_dict()))
    done = start(jobs, tmp, options, log, timeout)
    aggregate(cfg.output, options.instances)
    return done
