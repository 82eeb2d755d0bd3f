"""Several ranks: the layout torchrun starts, and the command that starts it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError


@dataclass(frozen=True)
class RankLayout:
    """How many training processes, on how many nodes, and how they meet (torchrun's flags)."""

    nproc_per_node: int = 1
    """Ranks on this node; each gets an equal, disjoint share of the run's cores."""
    nnodes: int = 1
    """Nodes; every node runs the same `harness train` with its own --node-rank."""
    node_rank: int | None = None
    """This node's rank (0 .. nnodes-1), with --master-addr: static rendezvous."""
    master_addr: str | None = None
    """Address of node 0 (static rendezvous)."""
    master_port: int = 29500
    """Port of node 0 (static rendezvous)."""
    rdzv_endpoint: str | None = None
    """HOST:PORT of a c10d rendezvous, instead of --node-rank and --master-addr."""
    rdzv_id: str = "harness"
    """Job id shared by the nodes of one run."""

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def uses_torchrun(self) -> bool:
        return self.world_size > 1 or self.rdzv_endpoint is not None

    def validate(self) -> None:
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise HarnessError("--nproc-per-node and --nnodes must be >= 1")
        static = self.master_addr is not None and self.node_rank is not None
        if self.nnodes > 1 and not self.rdzv_endpoint and not static:
            raise HarnessError(
                f"--nnodes {self.nnodes}: give --rdzv-endpoint HOST:PORT, or --master-addr "
                "and --node-rank, so that the nodes can find each other"
            )
        if self.node_rank is not None and not 0 <= self.node_rank < self.nnodes:
            raise HarnessError(f"--node-rank {self.node_rank}: expected 0 .. {self.nnodes - 1}")

    def torchrun(self, job: Path) -> list[str]:
        """The torch.distributed.run command that starts every local rank on `job` through
        harness.launch.rank_entry."""
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={self.nproc_per_node}",
            f"--nnodes={self.nnodes}",
        ]
        if self.nnodes == 1 and not self.rdzv_endpoint:
            cmd.append("--standalone")  # a free local port, no rendezvous server to name
        elif self.rdzv_endpoint:
            cmd += [
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint={self.rdzv_endpoint}",
                f"--rdzv-id={self.rdzv_id}",
            ]
        else:
            cmd += [
                f"--node-rank={self.node_rank}",
                f"--master-addr={self.master_addr}",
                f"--master-port={self.master_port}",
            ]
        return [*cmd, "-m", "harness.launch.rank_entry", str(job)]
