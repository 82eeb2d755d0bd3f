"""The worker entry point: `python -m harness.launch.worker JOB`, started only by the harness.

It checks that it started with its mode's environment (the ISA cap must be in place before
oneDNN's first kernel), takes its rank's share of the cores when torchrun started it, and runs
the job's task. A SIGINT before the task installs its own handler (the parent passes a Ctrl-C
on while this process still imports torch) ends it with 130, as an interrupted run, and no
traceback: nothing was written yet. The harness modules are imported inside `main` for that.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.launch.job import Job, WorkerContext

INTERRUPTED_EXIT = 130
"""Status.INTERRUPTED's exit code (128 + SIGINT), not imported from there: the fewer modules load
before `main`'s handler, the shorter the window a SIGINT gives a traceback in."""


def _train(job: Job, context: WorkerContext) -> int:
    from harness.train.config import TrainConfig
    from harness.train.trainer import train

    return train(TrainConfig.from_dict(job.settings), job.mode, context)


def _roofline(job: Job, context: WorkerContext) -> int:
    from harness.files import write_atomic
    from harness.precision.roofline import measure

    write_atomic(Path(job.result), json.dumps(measure(job.mode, **job.settings)))
    return 0


def _peer(job: Job, context: WorkerContext) -> int:
    from harness.bench.peer import PeerSpec, measure
    from harness.files import write_atomic

    settings = dict(job.settings)
    impl = settings.pop("impl")
    write_atomic(Path(job.result), json.dumps(measure(impl, job.mode, PeerSpec(**settings), context)))
    return 0


TASKS = {"train": _train, "roofline": _roofline, "peer": _peer}


def main(argv: list[str]) -> int:
    try:
        from harness.launch.environment import environment_problem
        from harness.launch.job import read_job

        if len(argv) != 1:
            raise HarnessError("harness.launch.worker: expected one argument, the job file")
        job = read_job(Path(argv[0]))
        wrong = environment_problem(job.mode)
        if wrong:
            raise HarnessError(
                f"{argv[0]}: this process did not start with the environment of mode {job.mode.name} "
                f"({wrong}); the harness starts its workers itself (harness train)"
            )
        context = job.context
        if "LOCAL_RANK" in os.environ:
            context = context.for_rank(int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"]))
        return TASKS[job.task](job, context)
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted; nothing was written", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
