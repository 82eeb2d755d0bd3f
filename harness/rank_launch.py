"""One torchrun rank: take this rank's share of the node's cores, then become the worker.

torch.distributed.run starts `python -m harness.rank_launch ARGS` once per local rank with
LOCAL_RANK and LOCAL_WORLD_SIZE set. The cores must be bound and OMP_NUM_THREADS set before
torch and its OpenMP runtime load, so this module imports neither and replaces itself (exec)
with `python -m harness ARGS`, which inherits the binding.
"""

from __future__ import annotations

import json
import os
import sys

from harness.launch import CONTEXT_ENV


def rank_cores(cores: list[int], local_rank: int, local_world_size: int) -> list[int]:
    """Consecutive, equal, disjoint slices of the node's cores, one per local rank."""
    per_rank = len(cores) // local_world_size
    if per_rank == 0:
        raise SystemExit(
            f"harness: --nproc-per-node {local_world_size} exceeds the {len(cores)} cores "
            f"this run may use ({cores}); choose at most {len(cores)}"
        )
    return cores[local_rank * per_rank : (local_rank + 1) * per_rank]


def main() -> None:
    context = json.loads(os.environ[CONTEXT_ENV])
    mine = rank_cores(context["cores"], int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"]))
    os.sched_setaffinity(0, mine)
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(len(mine))
    env[CONTEXT_ENV] = json.dumps({**context, "cores": mine, "node_cores": context["cores"]})
    os.execve(sys.executable, [sys.executable, "-m", "harness", *sys.argv[1:]], env)


if __name__ == "__main__":
    main()
