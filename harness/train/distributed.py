"""Data-parallel training across ranks: the worker's side of a torchrun launch.

`harness train --nproc-per-node N [--nnodes M ...]` starts torch.distributed.run, which starts
`harness.launch.rank_entry` once per rank; that binds the rank to its share of the node's cores and
execs the worker. The worker finds its rank here, joins the process group (gloo, or oneCCL's
`ccl` when its bindings import) and wraps the model in DistributedDataParallel. Each rank reads
its own shard of the data; rank 0 writes every result file.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from harness.errors import HarnessError


def available_backend(requested: str) -> str:
    """auto: oneCCL's `ccl` when its PyTorch bindings are installed, else gloo."""
    has_ccl = importlib.util.find_spec("oneccl_bindings_for_pytorch") is not None
    if requested == "auto":
        return "ccl" if has_ccl else "gloo"
    if requested == "ccl" and not has_ccl:
        raise HarnessError(
            "--dist-backend ccl: oneccl_bindings_for_pytorch is not installed "
            "(pip install oneccl_bind_pt, matching your torch), or use gloo"
        )
    if requested not in ("gloo", "ccl"):
        raise HarnessError(f"--dist-backend {requested}: expected auto, gloo or ccl")
    return requested


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    """The process group's backend; None when the run is a single process."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def join(cls, backend: str) -> Ranks:
        """This process's place in a torchrun launch (RANK, WORLD_SIZE, LOCAL_RANK), with the
        process group initialised; a single process when torchrun did not start it."""
        if "RANK" not in os.environ:
            return cls()
        world_size = int(os.environ["WORLD_SIZE"])
        if world_size == 1:
            return cls()
        chosen = available_backend(backend)
        if chosen == "ccl":
            import oneccl_bindings_for_pytorch  # noqa: F401  (registers the ccl backend)
        dist.init_process_group(chosen)
        return cls(int(os.environ["RANK"]), world_size, int(os.environ["LOCAL_RANK"]), chosen)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around the model: gradients averaged over ranks in backward."""
        if not self.distributed:
            return model
        return torch.nn.parallel.DistributedDataParallel(model)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (one collective for several scalars)."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed:
            dist.destroy_process_group()
