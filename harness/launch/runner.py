"""The one child-process runner: every process the harness starts goes through `run`.

Each child gets its own session, so that the terminal's Ctrl-C reaches it once, through us, and
a time-out can kill its whole process group (a worker's grandchildren too, which would otherwise
keep its log pipe open). SIGINT and SIGTERM sent to us are passed on to every child, which
finishes its step, checkpoints and exits. Exit codes are normalised the way a shell reports
them: killed by signal N is 128 + N.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TAIL_LINES = 20
"""Lines of a child's output kept for the record of a run that failed."""


@dataclass
class Child:
    """One process to start."""

    command: list[str]
    env: dict[str, str] | None = None
    """Its whole environment (None: ours)."""
    cores: Sequence[int] | None = None
    """CPUs it is bound to before it execs (None: ours)."""


@dataclass
class Log:
    """Where the children's output goes besides our stderr: a file, line by line, each line also
    echoed with `prefix`; the last lines are kept."""

    path: Path
    prefix: str = ""
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def pump(self, stream, out) -> None:
        for line in stream:
            with self._lock:
                if not out.closed:
                    try:
                        out.write(line)
                        out.flush()
                    except OSError as exc:
                        # a full disk: the pipe must still be drained, or the child blocks on it
                        out.close()
                        print(f"harness: {self.path}: no longer written ({exc.strerror})", file=sys.stderr)
                self.tail.append(line.rstrip())
                print(f"{self.prefix} {line.rstrip()}" if self.prefix else line.rstrip(), file=sys.stderr)


@dataclass
class Exit:
    code: int
    """The worst child's exit code (128 + N for a signal N)."""
    timed_out: bool = False
    """The children ran past the time-out and were stopped."""
    interrupted: bool = False
    """We were sent SIGINT or SIGTERM and passed it on."""
    tail: str = ""
    """The log's last lines (with a Log)."""
    killed_by: str | None = None
    """The signal that killed a child (SIGKILL, ...), if one did."""


def _normalised(code: int) -> int:
    return 128 - code if code < 0 else code


def _signal_name(codes: list[int]) -> str | None:
    killed = [signal.Signals(-c).name for c in codes if c < 0]
    return killed[0] if killed else None


def _worst(codes: list[int]) -> int:
    return max(codes, key=lambda c: (c != 0, c))


_PR_SET_PDEATHSIG = 1
_SIG_DFL = ctypes.c_void_p(0)
_libc = ctypes.CDLL(None, use_errno=True)


def _in_child(cores: Sequence[int] | None, parent: int) -> None:
    """Between fork and exec. The child is sent SIGTERM when we die, however we die (SIGKILL
    included): it then checkpoints and stops, instead of training on beside the next run. It is
    in a session of its own, so a terminal's signals reach it only through us."""
    # An ignored signal stays ignored across exec, and Python then installs no handler of its own:
    # started from a non-interactive shell's background job (CI runs so), which ignores SIGINT,
    # the worker ignored the SIGINT we pass on while it still imported torch, and trained to the
    # end. What we forward, it must hear.
    for sig in (signal.SIGINT, signal.SIGTERM):
        _libc.signal(sig, _SIG_DFL)
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # we died before the prctl
        os._exit(1)
    if cores:
        os.sched_setaffinity(0, cores)


def run(children: Sequence[Child], log: Log | None = None, timeout: float | None = None) -> Exit:
    """Start the children together and wait for all; with a `log`, their output goes through it."""
    out = log.path.open("w") if log else None
    procs = []
    for child in children:
        cores = child.cores
        procs.append(
            subprocess.Popen(
                child.command,
                env=child.env,
                text=True,
                bufsize=1,
                stdout=subprocess.PIPE if log else None,
                stderr=subprocess.STDOUT if log else None,
                start_new_session=True,
                preexec_fn=functools.partial(_in_child, cores, os.getpid()),
            )
        )
    interrupted = threading.Event()
    timed_out = threading.Event()

    def forward(signum: int, frame: object) -> None:
        interrupted.set()
        for p in procs:
            p.send_signal(signum)

    def stop_at_timeout() -> None:
        timed_out.set()
        for p in procs:
            p.send_signal(signal.SIGTERM)  # the worker checkpoints and exits ...
        for p in procs:
            try:
                p.wait(min(30.0, timeout or 30.0))
            except subprocess.TimeoutExpired:  # ... unless it is hung for real
                os.killpg(p.pid, signal.SIGKILL)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    timer = threading.Timer(timeout, stop_at_timeout) if timeout else None
    if timer:
        timer.start()
    try:
        pumps = [threading.Thread(target=log.pump, args=(p.stdout, out)) for p in procs] if log else []
        for t in pumps:
            t.start()
        raw = [p.wait() for p in procs]
        for t in pumps:
            t.join()
    finally:
        if timer:
            timer.cancel()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if out:
            with contextlib.suppress(OSError):  # the last buffered bytes of a log on a full disk
                out.close()
    tail = "\n".join(log.tail) if log else ""
    codes = [_normalised(c) for c in raw]
    return Exit(_worst(codes), timed_out.is_set(), interrupted.is_set(), tail, _signal_name(raw))
