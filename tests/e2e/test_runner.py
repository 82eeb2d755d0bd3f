"""The one child-process runner on tiny real children: exit codes as a shell reports them, the
killing signal named, a time-out that stops a child which ignores SIGTERM, the log and its tail."""

import sys

from harness.launch.runner import Child, Log, run

PY = sys.executable


def test_a_child_killed_by_a_signal_is_named_and_reported_as_128_plus_n():
    done = run([Child([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])])
    assert (done.code, done.killed_by, done.timed_out) == (137, "SIGKILL", False)
    worst = run([Child([PY, "-c", "raise SystemExit(0)"]), Child([PY, "-c", "raise SystemExit(3)"])])
    assert (worst.code, worst.killed_by) == (3, None)  # the worst of several children


def test_a_hung_child_is_stopped_at_the_time_out_and_its_log_kept(tmp_path):
    hang = "\n".join(
        [
            "import signal, time",
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)",  # a worker hung for real
            "print('started', flush=True)",
            "time.sleep(60)",
        ]
    )
    log = Log(tmp_path / "child.log", "[test]")
    done = run([Child([PY, "-c", hang])], log, timeout=1.0)
    assert done.timed_out and done.code == 137 and done.killed_by == "SIGKILL"
    assert done.tail == "started" and (tmp_path / "child.log").read_text() == "started\n"
