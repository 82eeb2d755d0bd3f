"""One torchrun rank: take this rank's share of the node's cores, then become the worker.

torch.distributed.run starts `python -m harness.launch.rank_entry JOB` once per local rank with
LOCAL_RANK and LOCAL_WORLD_SIZE set. The cores must be bound and OMP_NUM_THREADS set before
torch and its OpenMP runtime load, so this module imports neither and replaces itself (exec)
with the worker, which inherits the binding and takes the same share of the job's cores.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.launch.job import read_job


def main() -> None:
    job = sys.argv[1]
    try:
        context = read_job(Path(job)).context
        mine = context.for_rank(int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])).cores
    except HarnessError as exc:
        raise SystemExit(f"harness: {exc}") from None
    os.sched_setaffinity(0, mine)
    env = {**os.environ, "OMP_NUM_THREADS": str(len(mine))}
    os.execve(sys.executable, [sys.executable, "-m", "harness.launch.worker", job], env)


if __name__ == "__main__":
    main()
