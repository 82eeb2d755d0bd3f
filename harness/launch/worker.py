"""The worker entry point: `python -m harness.launch.worker JOB`, started only by the harness.

It checks that it started with its mode's environment (the ISA cap must be in place before
oneDNN's first kernel), takes its rank's share of the cores when torchrun started it, and runs
the task the job file names. A SIGINT before the task installs its own handler (the parent passes
a Ctrl-C on while this process still imports torch) ends it with 130, as an interrupted run, and
no traceback: nothing was written yet.

SIGINT is held (blocked) while the worker imports, and delivered once the imports are done. A
KeyboardInterrupt raised inside numpy's import, which torch's import runs, is not always passed
up: numpy's C start-up can swallow it and leave a half-made module. The worker then went on,
trained, and died later on `np.linalg` (a RecursionError) or on reloading numpy's C module. The
interpreter's own start-up (some 30 ms, before `main`) is the one window left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.launch.job import Job, WorkerContext

INTERRUPTED_EXIT = 130
"""Status.INTERRUPTED's exit code (128 + SIGINT), not imported from there: the fewer modules load
before `main`, the shorter the interpreter's start-up, the one window a SIGINT gives a traceback in."""


def main(argv: list[str]) -> int:
    try:
        with _sigint_held():
            job, context = _start(argv)
        return job.task(job, context)
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted; nothing was written", file=sys.stderr)
        return INTERRUPTED_EXIT


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT blocked inside; one that came meanwhile raises KeyboardInterrupt on the way out, from
    the unblocking call itself."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _start(argv: list[str]) -> tuple[Job, WorkerContext]:
    """The job this worker runs, and its rank's context; HarnessError for a wrong start."""
    # Imported here, not at the top: they load torch, which a SIGINT must not cut in half.
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
    return job, context


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
