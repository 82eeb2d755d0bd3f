"""The job file: everything a worker process is told by the parent that started it.

The parent admits a mode, resolves the cores and writes one job file; the worker
(harness.launch.worker) reads it. Settings travel as the config's own fields, never as
command-line strings, so a default lives only in its dataclass.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.files import write_atomic
from harness.machine.cores import rank_cores
from harness.precision.modes import PrecisionMode

FORMAT, VERSION = "harness.job", 1
TASKS = ("train", "roofline", "peer")


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


@dataclass(frozen=True)
class Job:
    task: str
    """train (one phase, harness.train), roofline (one mode's matmul peak) or peer (bench peer)."""
    mode: PrecisionMode
    """The precision mode, as the parent resolved it (built-in or from $HARNESS_PRECISION_FILE)."""
    context: WorkerContext
    settings: dict[str, Any]
    """The task's configuration: a TrainConfig's fields for train."""
    result: str | None = None
    """File the task writes its figures to (roofline, peer); a training run writes its folder."""


def write_job(path: Path, job: Job) -> Path:
    if job.task not in TASKS:
        raise ValueError(f"unknown task {job.task}")
    write_atomic(path, json.dumps({"format": FORMAT, "version": VERSION, **asdict(job)}, indent=2) + "\n")
    return path


def read_job(path: Path) -> Job:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: not a readable job file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise HarnessError(f"{path}: expected a {FORMAT} file of version {VERSION}")
    if data.get("task") not in TASKS:
        raise HarnessError(f"{path}: task {data.get('task')!r}, expected one of {', '.join(TASKS)}")
    context = data["context"]
    mode = data["mode"]
    return Job(
        task=data["task"],
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
