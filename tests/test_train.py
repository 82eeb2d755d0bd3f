"""`harness train` end to end in real processes: synth -> phase 1 -> phase 2, and what goes wrong."""

import json
from pathlib import Path

import numpy as np
import pytest
from harness_cli import metrics, result, run
from mlcommons_writer import write_file

TINY = ["--model", "bert-tiny", "--precision", "fp32"]


@pytest.fixture(scope="module")
def phase1(synth_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phase1") / "run"
    proc = run(
        "train",
        "--phase",
        1,
        *TINY,
        "--dataset",
        synth_dir,
        "--output",
        out,
        "--steps",
        400,
        "--batch-size",
        32,
        "--learning-rate",
        1e-2,
        "--eval-every",
        200,
        "--log-every",
        50,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_phase1_learns_the_synthetic_language(phase1, synth_dir):
    steps, evals = metrics(phase1)
    assert [s["step"] for s in steps] == list(range(1, 401))
    first = np.mean([s["loss"] for s in steps[:20]])
    last = np.mean([s["loss"] for s in steps[-20:]])
    assert last < 0.6 * first, (first, last)

    synth = json.loads((synth_dir / "synth.json").read_text())
    # The MLM loss falls clearly below the unigram entropy: the model uses context.
    assert np.mean([s["mlm_loss"] for s in steps[-20:]]) < synth["mlm_unigram_entropy_nats"] - 1.0
    r = result(phase1)
    assert r["status"] == "ok" and r["steps_completed"] == 400
    # above chance: 5x the accuracy of always predicting the most frequent masked token
    assert r["eval_mlm_accuracy"] > 5 * synth["mlm_majority_accuracy"]
    assert [e["step"] for e in evals] == [200, 400]
    assert evals[-1]["eval_mlm_accuracy"] > evals[0]["eval_mlm_accuracy"]
    # next-sentence prediction above chance: 0.58 on 256 examples is 2.5 standard deviations
    # above 0.5 (measured here: 0.63 at step 400)
    assert r["eval_nsp_accuracy"] > 0.58


def test_phase1_result_and_logs(phase1):
    r = result(phase1)
    for key in (
        "throughput_seq_per_s",
        "throughput_p10",
        "throughput_p90",
        "step_time_cv",
        "final_loss",
        "eval_mlm_accuracy",
        "wall_time_s",
        "model_tflops_per_s",
        "data_wait_fraction",
        "harness_time_fraction",
    ):
        assert isinstance(r[key], float), key
    # the harness's own work in a step (batch conversion, checks, metrics) is a small share of it
    assert 0 < r["harness_time_fraction"] < 0.1
    assert r["throughput_p10"] <= r["throughput_seq_per_s"] <= r["throughput_p90"]
    assert r["steps_measured"] == 395  # 5 timing warm-up steps left out
    assert r["config"]["batch_size"] == 32 and r["config"]["model"] == "bert-tiny"
    assert r["versions"]["torch"].startswith("2.13.0") and r["versions"]["tfrecord"]
    assert r["eval_source"].endswith("/eval") and r["seq_len"] == 128 and r["max_predictions"] == 76
    steps, _ = metrics(phase1)
    assert set(steps[0]) >= {
        "step",
        "loss",
        "mlm_loss",
        "nsp_loss",
        "lr",
        "step_time_s",
        "data_time_s",
        "seq_per_s",
        "compute_time_s",
    }
    assert all(0 < s["compute_time_s"] < s["step_time_s"] - s["data_time_s"] for s in steps)

    events = [
        json.loads(line.removeprefix(":::MLLOG ")) for line in (phase1 / "mllog.txt").read_text().splitlines()
    ]
    keys = [e["key"] for e in events]
    for key in (
        "run_start",
        "run_stop",
        "global_batch_size",
        "opt_lamb_beta_1",
        "opt_lamb_beta_2",
        "opt_lamb_weight_decay_rate",
        "opt_lamb_epsilon",
        "opt_base_learning_rate",
        "opt_learning_rate_warmup_steps",
        "eval_accuracy",
    ):
        assert key in keys, key
    stop = next(e for e in events if e["key"] == "run_stop")
    assert stop["metadata"]["status"] == "success"
    evals = [e for e in events if e["key"] == "eval_accuracy"]
    assert [e["metadata"]["samples_count"] for e in evals] == [6400, 12800]
    assert (phase1 / "model_save" / "config.json").is_file()


def test_phase2_continues_from_the_phase1_model(phase1, synth_dir, tmp_path):
    out = tmp_path / "p2"
    proc = run(
        "train",
        "--phase",
        2,
        *TINY,
        "--dataset",
        synth_dir,
        "--output",
        out,
        "--checkpoint",
        phase1 / "model_save",
        "--steps",
        30,
        "--batch-size",
        8,
        "--learning-rate",
        5e-3,
        "--eval-examples",
        64,
    )
    assert proc.returncode == 0, proc.stderr
    r = result(out)
    assert r["status"] == "ok" and r["seq_len"] == 512
    assert [Path(p).name for p in r["train_files"]] == ["part-00009-of-00010"]
    synth = json.loads((synth_dir / "synth.json").read_text())
    steps, _ = metrics(out)
    # Starting from phase 1's weights, the very first steps already beat the unigram baseline.
    assert np.mean([s["mlm_loss"] for s in steps[:5]]) < synth["mlm_unigram_entropy_nats"] - 1.0
    # above chance: 5x the accuracy of always predicting the most frequent masked token
    assert r["eval_mlm_accuracy"] > 5 * synth["mlm_majority_accuracy"]


def test_phase2_refuses_to_start_without_a_phase1_checkpoint(phase1, synth_dir, tmp_path):
    common = ["train", "--phase", 2, *TINY, "--dataset", synth_dir, "--steps", 2]
    proc = run(*common, "--output", tmp_path / "a")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "harness: phase 2 needs --checkpoint DIR: the model_save directory of a phase-1 run "
        "(OUTPUT_DIR/model_save)"
    ]
    proc = run(*common, "--output", tmp_path / "b", "--checkpoint", tmp_path)
    assert proc.returncode == 2 and "no config.json; not a model_save directory" in proc.stderr
    # A phase-2 model_save is not a phase-1 result either.
    p2 = tmp_path / "p2"
    assert run(*common, "--output", p2, "--checkpoint", phase1 / "model_save").returncode == 0
    proc = run(*common, "--output", tmp_path / "c", "--checkpoint", p2 / "model_save")
    assert proc.returncode == 2 and "holds phase 2; phase 2 needs the model_save" in proc.stderr
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


SHORT = [
    "train",
    "--phase",
    1,
    *TINY,
    "--steps",
    24,
    "--batch-size",
    8,
    "--save-every",
    8,
    "--eval-examples",
    16,
    "--log-every",
    8,
]


def test_resume_after_a_crash_continues_the_same_trajectory(synth_dir, tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert run(*SHORT, "--dataset", synth_dir, "--output", straight).returncode == 0

    proc = run(*SHORT, "--dataset", synth_dir, "--output", crashed, env={"HARNESS_FAULT": "crash@14"})
    assert proc.returncode == 86  # killed mid-run: no result.json, checkpoint from step 8
    assert not (crashed / "result.json").exists()
    assert len(metrics(crashed)[0]) == 13

    proc = run(*SHORT, "--dataset", synth_dir, "--output", crashed, "--resume")
    assert proc.returncode == 0, proc.stderr
    a, b = metrics(straight)[0], metrics(crashed)[0]
    assert [s["step"] for s in b] == list(range(1, 25))
    np.testing.assert_allclose([s["loss"] for s in b], [s["loss"] for s in a], rtol=1e-5)
    np.testing.assert_allclose([s["lr"] for s in b], [s["lr"] for s in a])
    assert result(crashed)["status"] == "ok"
    mllog = (crashed / "mllog.txt").read_text()
    assert mllog.count('"key": "run_start"') == 2  # the interrupted attempt and the resumed one


def test_nan_loss_stops_the_run_as_diverged(synth_dir, tmp_path):
    out = tmp_path / "run"
    proc = run(*SHORT, "--dataset", synth_dir, "--output", out, env={"HARNESS_FAULT": "nan@5"})
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr and "loss is nan; stopping as diverged" in proc.stderr
    r = result(out)
    assert r["status"] == "diverged" and r["steps_completed"] == 4
    assert '"status": "aborted"' in (out / "mllog.txt").read_text()


def test_bad_data_stops_with_one_line_naming_file_and_record(tmp_path):
    data = tmp_path / "data"
    for i in range(2):
        write_file(data / "seq_128" / f"part-{i:05d}", range(i * 40, i * 40 + 40))
    part = data / "seq_128" / "part-00000"
    raw = bytearray(part.read_bytes())
    raw[-10] ^= 0x55  # inside the last record's payload
    part.write_bytes(bytes(raw))
    proc = run(*SHORT, "--dataset", data, "--output", tmp_path / "run", "--data-workers", 2)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert lines[-1].startswith(f"harness: {part}: record 39 at byte ")
    assert lines[-1].endswith("data CRC mismatch")
    r = result(tmp_path / "run")
    assert r["status"] == "failed" and r["error"].startswith(f"DataError: {part}: record 39")


def test_an_output_with_a_previous_run_is_refused(synth_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text("{}")
    proc = run(*SHORT, "--dataset", synth_dir, "--output", out)
    assert proc.returncode == 2 and "holds a previous run; use an empty directory or --resume" in proc.stderr


def test_resume_with_other_settings_is_refused(synth_dir, tmp_path):
    out = tmp_path / "run"
    crash = run(*SHORT, "--dataset", synth_dir, "--output", out, env={"HARNESS_FAULT": "crash@10"})
    assert crash.returncode == 86
    proc = run(*SHORT, "--dataset", synth_dir, "--output", out, "--resume", "--seed", 7)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"harness: --resume: --seed is 7 but the run in {out} used 42; resume with the same settings"
    )


def test_a_save_cut_between_its_renames_is_recovered(synth_dir, tmp_path):
    out = tmp_path / "run"
    crash = run(*SHORT, "--dataset", synth_dir, "--output", out, env={"HARNESS_FAULT": "crash@10"})
    assert crash.returncode == 86
    (out / "model_save").rename(out / "model_save.old")  # as if the crash came mid-save
    proc = run(*SHORT, "--dataset", synth_dir, "--output", out, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert result(out)["steps_completed"] == 24 and not (out / "model_save.old").exists()
