"""The job file: everything a worker process is told by the parent that started it.

The parent admits a mode, resolves the cores and writes one job file; the worker
(harness.launch.worker) reads it. Settings travel as the config's own fields, never as
command-line strings, so a default lives only in its dataclass. The task is handed over as a
function, as optimum-benchmark's launchers are handed theirs: the file names it by its import
path, and launch/ never knows what its workers run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.files import write_atomic
from harness.machine.cores import rank_cores
from harness.precision.modes import PrecisionMode

FORMAT, VERSION = "harness.job", 1

TASK_PATH = re.compile(r"harness(\.\w+)+:\w+")
"""module:function, of the harness's own modules: what a job file may name as its task."""


@dataclass(frozen=True)
class WorkerContext:
    """What the parent learnt about the machine and the mode before starting the worker."""

    emulated: bool
    """The mode runs without the CPU features it needs natively (--allow-emulation)."""
    missing_features: tuple[str, ...]
    """The features it lacks here, for the run's log and result."""
    gemm_isa: str | None
    """The ISA the kernel census must find its GEMMs on (None: no claim)."""
    amx_usable: bool
    """AMX tiles are present and the OS lets this process use them."""
    cpu_model: str
    """The CPU's model string."""
    machine_key: str
    """The machine's fingerprint key (harness.machine.platform.fingerprint_key)."""
    cores: tuple[int, ...]
    """The CPUs this process is bound to."""
    node_cores: tuple[int, ...] | None = None
    """With several ranks on a node: every rank's cores together; None for one process."""

    def for_rank(self, local_rank: int, local_world_size: int) -> WorkerContext:
        """This rank's share of the node's cores (torchrun started it with LOCAL_RANK set)."""
        mine = rank_cores(self.cores, local_rank, local_world_size)
        return replace(self, cores=tuple(mine), node_cores=self.cores)


Task = Callable[["Job", WorkerContext], int]
"""A worker's work: a module-level function that returns the worker's exit code."""


@dataclass(frozen=True)
class Job:
    task: Task
    """What the worker runs: one phase of training, one mode's matmul peak, one bench peer step."""
    mode: PrecisionMode
    """The precision mode, as the parent resolved it (built-in or from $HARNESS_PRECISION_FILE)."""
    context: WorkerContext
    settings: dict[str, Any]
    """The task's configuration: a TrainConfig's fields for train."""
    result: str | None = None
    """File the task writes its figures to (roofline, peer); a training run writes its folder."""


def task_path(task: Task) -> str:
    """The import path the worker finds `task` by; ValueError for one it could not find."""
    path = f"{task.__module__}:{task.__qualname__}"
    if not TASK_PATH.fullmatch(path) or find_task(path) is not task:
        raise ValueError(f"{path}: a worker task is a module-level function of the harness")
    return path


def find_task(path: str) -> Task:
    """The function a job file names (module:function); HarnessError for anything else."""
    module, _, name = path.partition(":")
    task = None
    if TASK_PATH.fullmatch(path):
        with contextlib.suppress(ImportError):
            task = getattr(importlib.import_module(module), name, None)
    if not callable(task):
        raise HarnessError(f"task {path!r}: not a function of the harness (module:function)")
    return task


def write_job(path: Path, job: Job) -> Path:
    data = {"format": FORMAT, "version": VERSION, **asdict(job), "task": task_path(job.task)}
    write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


def write_figures(job: Job, figures: dict) -> int:
    """A measuring task's figures, in the file its parent reads back (launchers.run_task)."""
    if job.result is None:
        raise ValueError("a measuring task's job names no result file")
    write_atomic(Path(job.result), json.dumps(figures))
    return 0


def read_job(path: Path) -> Job:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: not a readable job file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise HarnessError(f"{path}: expected a {FORMAT} file of version {VERSION}")
    try:
        task = find_task(str(data.get("task")))
    except HarnessError as exc:
        raise HarnessError(f"{path}: {exc}") from None
    context = data["context"]
    mode = data["mode"]
    return Job(
        task=task,
        mode=PrecisionMode(**{**mode, "requires": tuple(mode["requires"])}),
        context=WorkerContext(
            **{
                **context,
                "missing_features": tuple(context["missing_features"]),
                "cores": tuple(context["cores"]),
                "node_cores": tuple(context["node_cores"]) if context["node_cores"] else None,
            }
        ),
        settings=data["settings"],
        result=data["result"],
    )
