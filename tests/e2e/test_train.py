"""`harness train` end to end in real processes: synth -> phase 1 (it learns) -> phase 2, and a
crash then resume. What needs no process of its own is in tests/unit/test_trainer.py."""

import json
from pathlib import Path

import numpy as np
import pytest
from harness_cli import launch, metrics, result

from harness import cli
from harness.machine.platform import detect

TINY = ["--model", "bert-tiny", "--precision", "fp32"]


@pytest.fixture(scope="module")
def phase1(synth_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phase1") / "run"
    code = cli.main(
        [
            str(a)
            for a in (
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
                16,
                "--learning-rate",
                1e-2,
                "--eval-every",
                200,
                "--log-every",
                50,
                # what test_phase1_learns_the_synthetic_language asks of it: run_stop then says success
                "--target-accuracy",
                5 * json.loads((synth_dir / "synth.json").read_text())["mlm_majority_accuracy"],
            )
        ]
    )
    assert code == 0
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
    assert r.status == "ok" and r.steps_completed == 400
    # above chance: 5x the accuracy of always predicting the most frequent masked token
    assert r.eval_mlm_accuracy > 5 * synth["mlm_majority_accuracy"]
    assert [e["step"] for e in evals] == [200, 400]
    assert evals[-1]["eval_mlm_accuracy"] > evals[0]["eval_mlm_accuracy"]


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
        assert isinstance(getattr(r, key), float), key
    # the harness's own work in a step (batch conversion, checks, metrics) is a small share of it
    assert 0 < r.harness_time_fraction < 0.1
    assert r.throughput_p10 <= r.throughput_seq_per_s <= r.throughput_p90
    assert r.steps_measured == 395  # 5 timing warm-up steps left out
    assert r.config["batch_size"] == 16 and r.config["model"] == "bert-tiny"
    assert r.versions["torch"].startswith("2.13.0") and r.versions["tfrecord"]
    assert r.eval_source.endswith("/eval") and r.seq_len == 128 and r.max_predictions == 76
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
    assert [e["metadata"]["samples_count"] for e in evals] == [3200, 6400]
    assert (phase1 / "model_save" / "config.json").is_file()


def test_phase2_continues_from_the_phase1_model(capfd, phase1, synth_dir, tmp_path):
    out = tmp_path / "p2"
    proc = launch(
        capfd,
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
        "--fp32-gemm",
        "onednn",
    )
    assert proc.returncode == 0, proc.stderr
    r = result(out)
    assert r.status == "ok" and r.seq_len == 512
    # fp32 GEMMs in oneDNN wherever PyTorch can send them there as fp32 math: AVX-512 without AMX
    host = detect()
    if host.avx512 and not host.amx_usable:
        assert (r.fp32_gemm, r.fp32_gemm_reason) == ("onednn", "--fp32-gemm onednn")
        assert r.gemm_isa_share[r.gemm_isa] > 0.9 and not r.gemm_isa.startswith("mkl:")
    else:
        assert r.fp32_gemm == "mkl" and r.gemm_isa.startswith("mkl:"), r.fp32_gemm_reason
    assert f"fp32 GEMMs: {r.fp32_gemm} ({r.fp32_gemm_reason})" in proc.stderr
    assert [Path(p).name for p in r.train_files] == ["part-00009-of-00010"]
    synth = json.loads((synth_dir / "synth.json").read_text())
    steps, _ = metrics(out)
    # Starting from phase 1's weights, the very first steps already beat the unigram baseline.
    assert np.mean([s["mlm_loss"] for s in steps[:5]]) < synth["mlm_unigram_entropy_nats"] - 1.0
    # above chance: 5x the accuracy of always predicting the most frequent masked token
    assert r.eval_mlm_accuracy > 5 * synth["mlm_majority_accuracy"]


SHORT = [
    "train",
    "--phase",
    1,
    *TINY,
    "--steps",
    12,
    "--batch-size",
    8,
    "--save-every",
    4,
    "--eval-examples",
    16,
    "--log-every",
    4,
]


def test_resume_after_a_crash_continues_the_same_trajectory(capfd, monkeypatch, synth_dir, tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert launch(capfd, *SHORT, "--dataset", synth_dir, "--output", straight).returncode == 0

    monkeypatch.setenv("HARNESS_FAULT", "crash@7")  # the worker inherits it
    proc = launch(capfd, *SHORT, "--dataset", synth_dir, "--output", crashed)
    monkeypatch.delenv("HARNESS_FAULT")
    assert proc.returncode == 86  # killed mid-run: no result.json, checkpoint from step 4
    assert not (crashed / "result.json").exists()
    assert len(metrics(crashed)[0]) == 6

    proc = launch(capfd, *SHORT, "--dataset", synth_dir, "--output", crashed, "--resume")
    assert proc.returncode == 0, proc.stderr
    a, b = metrics(straight)[0], metrics(crashed)[0]
    assert [s["step"] for s in b] == list(range(1, 13))
    np.testing.assert_allclose([s["loss"] for s in b], [s["loss"] for s in a], rtol=1e-5)
    np.testing.assert_allclose([s["lr"] for s in b], [s["lr"] for s in a])
    assert result(crashed).status == "ok"
    mllog = (crashed / "mllog.txt").read_text()
    assert mllog.count('"key": "run_start"') == 2  # the interrupted attempt and the resumed one
