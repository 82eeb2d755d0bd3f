"""What a failure leaves a user with, on real processes: a comparison whose fp32 phase 2 crashed is
still reported, and a Ctrl-C while a worker starts ends it as interrupted, without a traceback."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness_cli import launch

from harness.results.tables import read_runs


def test_a_crashed_fp32_phase2_leaves_the_rest_of_the_set_reported(capfd, monkeypatch, synth_dir, tmp_path):
    out = tmp_path / "cmp"
    monkeypatch.setenv("HARNESS_FAULT", "crash@3:fp32:2")
    done = launch(
        capfd,
        "compare",
        "--preset",
        "smoke",
        "--precisions",
        "fp32,avx-fp32",
        "--backends",
        "stock",
        "--phases",
        "1,2",
        "--steps",
        4,
        "--dataset",
        synth_dir,
        "--output",
        out,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    runs = read_runs(out / "runs.csv").set_index("run_id")
    assert runs.loc["p2-fp32-r0", "status"] == "crashed"
    assert set(runs.drop(index="p2-fp32-r0")["status"]) == {"ok"}
    page = (out / "report.html").read_text()
    assert 'p2-fp32-r0</b> <span class="bad">crashed</span>' in page and "avx-fp32 seed 0" in page


def _worker_of(parent: int) -> int | None:
    """The pid of the parent's child that runs harness.launch.worker, once it has exec'd."""
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        try:
            if b"harness.launch.worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
        except FileNotFoundError:  # a short-lived helper (lscpu) that has already gone
            continue
    return None


@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["terminal", "background-job"])
def test_ctrl_c_while_the_worker_starts_exits_130_without_a_traceback(synth_dir, tmp_path, inherited):
    """`background-job`: started with SIGINT ignored, as a non-interactive shell starts `cmd &` (and
    CI ran the suite): the worker once inherited that, ignored the SIGINT passed on, and trained to
    the end."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_FAULT"}
    train = ["train", "--phase", "1", "--precision", "fp32", "--model", "bert-tiny", "--steps", "2"]
    parent = subprocess.Popen(
        [sys.executable, "-m", "harness", *train, "--dataset", str(synth_dir), "--output", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, inherited),
    )
    deadline = time.monotonic() + 120
    while _worker_of(parent.pid) is None:
        assert parent.poll() is None and time.monotonic() < deadline, "the worker never started"
        time.sleep(0.01)
    # past the interpreter's own start-up, well inside torch's import (seconds), before the
    # worker's stop handler
    time.sleep(0.3)
    parent.send_signal(signal.SIGINT)  # what the terminal's Ctrl-C sends the harness
    _, stderr = parent.communicate(timeout=120)
    assert parent.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "harness: interrupted; nothing was written" in stderr
    assert not out.exists()
