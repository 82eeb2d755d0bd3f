"""The worker entry point: `python -m harness.launch.worker JOB`, started only by the harness.

It checks that it started with its mode's environment (the ISA cap must be in place before
oneDNN's first kernel), takes its rank's share of the cores when torchrun started it, and runs
the task the job file names. A SIGINT before the task installs its own handler (the parent passes
a Ctrl-C on while this process still imports torch) ends it with 130, as an interrupted run, and
no traceback: nothing was written yet.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.errors import HarnessError

INTERRUPTED_EXIT = 130
"""Status.INTERRUPTED's exit code (128 + SIGINT), not imported from there: the fewer modules load
before `main`'s handler, the shorter the window a SIGINT gives a traceback in."""


def main(argv: list[str]) -> int:
    try:
        # Imported here, not at the top: they load torch, and a SIGINT while it loads must reach
        # the handler below, not give a traceback.
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
        return job.task(job, context)
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted; nothing was written", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
