"""The one place a run's result is built: what every result records, then the run's own figures."""

from __future__ import annotations

import os
import resource
import socket
import time
from dataclasses import asdict
from datetime import UTC, datetime

import torch

from harness.launch.environment import ISA_ENV_VARS, MALLOC_ENV_VARS, preloaded
from harness.launch.job import WorkerContext
from harness.machine.versions import library_versions
from harness.precision.modes import PrecisionMode
from harness.results.records import Status
from harness.results.run_record import RunRecord
from harness.train.config import TrainConfig
from harness.train.distributed import Ranks


class RunResult:
    """Started when the worker starts (its clock and start time); `build` gives its RunRecord."""

    def __init__(self, cfg: TrainConfig, mode: PrecisionMode, context: WorkerContext, ranks: Ranks) -> None:
        self.cfg, self.mode, self.context, self.ranks = cfg, mode, context, ranks
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.wall_start = time.perf_counter()

    def build(self, status: Status, error: str | None, figures: dict) -> RunRecord:
        """figures: the run's own, by RunRecord's field names."""
        cfg, context = self.cfg, self.context
        return RunRecord(
            status=status,
            error=error,
            phase=cfg.phase,
            precision=cfg.precision,
            steps=cfg.steps,
            valid=status is not Status.INVALID,
            invalid_reason=error if status is Status.INVALID else None,
            precision_mode=asdict(self.mode),
            isa_env={k: os.environ.get(k) for k in ISA_ENV_VARS},
            malloc_env={k: os.environ[k] for k in MALLOC_ENV_VARS if k in os.environ},
            preload=preloaded(),
            cores=list(context.cores),
            threads=torch.get_num_threads(),
            world_size=self.ranks.world_size,
            dist_backend=self.ranks.backend,
            batch_size_per_rank=cfg.batch_size,
            node_cores=list(context.node_cores or context.cores),
            cpu_model=context.cpu_model,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            wall_time_s=time.perf_counter() - self.wall_start,
            # ru_maxrss is KiB on Linux
            peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            versions=library_versions(),
            config=cfg.to_dict(),
            **figures,
        )
