"""Issue 35's hostile inputs: each refused with one line naming its flag or file (exit 2, nothing
written), or, where the run cannot know up front, recorded rather than passed off as normal."""

from __future__ import annotations

from harness_cli import call

from harness.results.records import StepRecord
from harness.train.metrics import MetricsProcessor

TINY = ["--phase", 1, "--precision", "fp32", "--model", "bert-tiny"]


def _steps(metrics: MetricsProcessor, count: int) -> None:
    for step in range(1, count + 1):
        metrics.step(StepRecord(step, 5.0, 4.0, 1.0, 1e-3, 1.0, 0.5, 0.01, 16.0, 10**9))


def test_a_run_without_a_timed_step_records_its_cold_steps_and_says_so():
    metrics = MetricsProcessor(None, total_steps=3, log_every=10)
    _steps(metrics, 3)
    summary = metrics.summary(timing_warmup=5, batch_size=8, also_cold=(3,))
    assert summary["cold_steps"] == [1, 2, 3] and summary["steps_measured"] == 0
    assert "every step fell in the timing warm-up" in summary["throughput_note"]
    assert summary["throughput_seq_per_s"] == 16.0  # still figures, from the cold steps
    warm = MetricsProcessor(None, total_steps=8, log_every=10)
    _steps(warm, 8)
    summary = warm.summary(timing_warmup=5, batch_size=8, also_cold=(5,))
    assert summary["cold_steps"] == [1, 2, 3, 4, 5] and summary["steps_measured"] == 3
    assert summary["throughput_note"] is None


def test_compare_refuses_steps_that_leave_no_timed_step(capsys, tmp_path):
    proc = call(capsys, "compare", "--preset", "smoke", "--steps", 3, "--output", tmp_path / "x")
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "harness: --steps 3 leaves no timed step: preset smoke leaves each run's first 3 steps out "
        "of the statistics; give --steps above it",
    )
    assert not (tmp_path / "x").exists()
