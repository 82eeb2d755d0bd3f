"""harness.results.files: run files carry their version, and what is not one is refused, named."""

import json
from dataclasses import replace

import pytest
from conftest import RUNSETS

from harness.errors import HarnessError
from harness.plan.plan import CompareConfig, Outcome, Plan, make_plan
from harness.plan.presets import get_preset
from harness.results.files import (
    METRICS_FILE,
    RESULT_FILE,
    MetricsWriter,
    read_machine,
    read_metrics,
    read_plan,
    read_result,
    write_machine,
    write_plan,
    write_result,
)
from harness.results.records import Status

STEP = {
    "step": 1,
    "loss": 10.0,
    "mlm_loss": 9.0,
    "nsp_loss": 1.0,
    "lr": 1e-3,
    "grad_norm": 2.0,
    "step_time_s": 0.1,
    "data_time_s": 0.01,
    "seq_per_s": 80.0,
    "model_flops": 1000,
}


def test_a_result_carries_its_version_and_a_newer_or_foreign_one_is_refused(tmp_path):
    record = read_result(RUNSETS / "baseline" / "runs" / "p1-fp32-r0")
    assert record is not None and record.status is Status.OK
    write_result(tmp_path, replace(record, throughput_seq_per_s=1.5))
    data = json.loads((tmp_path / RESULT_FILE).read_text())
    assert (data["format"], data["version"], data["status"]) == ("harness.result", 1, "ok")
    assert read_result(tmp_path) == replace(record, throughput_seq_per_s=1.5)
    assert read_result(tmp_path / "none") is None
    (tmp_path / RESULT_FILE).write_text(json.dumps({**data, "later_field": 1}))
    assert read_result(tmp_path) == replace(record, throughput_seq_per_s=1.5)  # a later v1 field
    (tmp_path / RESULT_FILE).write_text(json.dumps({k: v for k, v in data.items() if k != "cores"}))
    with pytest.raises(HarnessError, match=r"result.json: no cores: not a run's result"):
        read_result(tmp_path)
    (tmp_path / RESULT_FILE).write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(HarnessError, match=r"result.json: harness.result version 99; this harness reads"):
        read_result(tmp_path)
    (tmp_path / RESULT_FILE).write_text(json.dumps({**data, "status": "fine"}))
    with pytest.raises(HarnessError, match=r"result.json: status 'fine'; expected one of ok, "):
        read_result(tmp_path)
    (tmp_path / RESULT_FILE).write_text('{"status": "ok", ')
    with pytest.raises(HarnessError, match=r"result.json: not readable as JSON"):
        read_result(tmp_path)


def test_metrics_survive_a_cut_last_line_and_refuse_garbage_inside(tmp_path):
    writer = MetricsWriter(tmp_path)
    writer.write(STEP)
    writer.write(
        {"step": 1, "eval_mlm_accuracy": 0.5, "eval_loss": 3.0, "eval_nsp_accuracy": 0.9, "eval_examples": 8}
    )
    writer.close()
    path = tmp_path / METRICS_FILE
    assert json.loads(path.read_text().splitlines()[0]) == {"format": "harness.train.metrics", "version": 1}
    with path.open("a") as f:
        f.write('{"step": 2, "loss": 9.')  # what a killed worker leaves
    steps, evals = read_metrics(tmp_path)
    assert [s.step for s in steps] == [1] and evals[0].eval_mlm_accuracy == 0.5
    path.write_text(path.read_text().replace('"loss": 9.', '"loss": 9.0}\nnot json\n{"step": 3'))
    with pytest.raises(HarnessError, match=r"metrics.jsonl: line 5 is not JSON"):
        read_metrics(tmp_path)


def test_a_resumed_writer_keeps_the_records_up_to_the_checkpoint(tmp_path):
    writer = MetricsWriter(tmp_path)
    for step in (1, 2, 3):
        writer.write({**STEP, "step": step})
    writer.close()
    resumed = MetricsWriter(tmp_path, resume_from=2)
    assert [r["step"] for r in resumed.kept] == [1, 2]
    resumed.write({**STEP, "step": 3, "loss": 7.0})
    resumed.close()
    steps, _ = read_metrics(tmp_path)
    assert [(s.step, s.loss) for s in steps] == [(1, 10.0), (2, 10.0), (3, 7.0)]


def test_a_plan_reads_back_as_the_types_that_wrote_it(tmp_path):
    preset = get_preset("smoke")
    runs = make_plan(
        CompareConfig(preset="smoke", phases="1,2", precisions="fp32,bf16", backends="stock"), preset
    )
    outcomes = [
        Outcome(runs[0].run_id, "ok", 0, 12.5, "done"),
        Outcome(runs[1].run_id, "refused", 2, 0.1, ""),
    ]
    plan = Plan(tmp_path / "data", preset, runs, outcomes, [("fp32", "avx-fp32")])
    write_plan(tmp_path, plan)
    assert json.loads((tmp_path / "plan.json").read_text())["version"] == 1
    assert read_plan(tmp_path) == plan
    assert read_plan(tmp_path).outcome(runs[1].run_id).status == "refused"
    # a plan written before a field existed takes its default; one a later version added is left out
    old = json.loads((tmp_path / "plan.json").read_text())
    del old["runs"][0]["backend"], old["preset"]["evaluations"]
    old["outcomes"][0]["later"] = 1
    (tmp_path / "plan.json").write_text(json.dumps(old))
    assert read_plan(tmp_path) == plan


def test_a_plan_without_its_runs_is_not_a_plan(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"runs": []}))
    with pytest.raises(HarnessError, match=r"plan.json: no 'outcomes': not a `harness compare` plan"):
        read_plan(tmp_path)
    (tmp_path / "plan.json").write_text(json.dumps({"runs": [{"run_id": "x"}], "outcomes": [], "preset": {}}))
    with pytest.raises(HarnessError, match=r"plan.json: not a `harness compare` plan \((TypeError|KeyError)"):
        read_plan(tmp_path)


def test_a_corrupt_machine_record_is_named(tmp_path):
    write_machine(tmp_path, {"cpu_model": "test CPU"})
    assert read_machine(tmp_path) == {"cpu_model": "test CPU"}
    (tmp_path / "machine.json").write_text('{"cpu')
    with pytest.raises(HarnessError, match=r"machine.json: not readable as JSON"):
        read_machine(tmp_path)
    assert read_machine(tmp_path / "none") == {}


def test_a_worker_that_left_no_result_is_read_from_its_exit_code():
    codes = [130, 2, 5, 1, -9, 0, None]
    assert [Status.of_exit(c) for c in codes] == [
        Status.INTERRUPTED,
        Status.REFUSED,
        Status.FAILED,
        *[Status.CRASHED] * 4,
    ]
