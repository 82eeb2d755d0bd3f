"""Issue 35's hostile inputs: each refused with one line naming its flag or file (exit 2, nothing
written), or, where the run cannot know up front, recorded rather than passed off as normal."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess

import pytest
from harness_cli import call

from harness.datasets import synth
from harness.datasets.synth import SynthSpec, synthesize
from harness.errors import HarnessError
from harness.models.config import NAMED_CONFIGS, load_config
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


def test_bad_train_numbers_are_one_line_and_write_nothing(capsys, synth_dir, tmp_path):
    for flag, value, message in (
        ("--seed", -1, "--seed must be in [0, 2**32), got -1"),
        ("--learning-rate", "inf", "--learning-rate must be a finite number, got inf"),
        ("--learning-rate", "nan", "--learning-rate must be a finite number, got nan"),
        ("--weight-decay", "nan", "--weight-decay must be a finite number, got nan"),
        ("--weight-decay", -0.1, "--weight-decay must be >= 0, got -0.1"),
        ("--target-accuracy", "inf", "--target-accuracy must be a finite number, got inf"),
    ):
        proc = call(capsys, "train", *TINY, "--dataset", synth_dir, "--output", tmp_path / "run", flag, value)
        assert (proc.returncode, proc.stderr.strip()) == (2, f"harness: {message}")
    assert not (tmp_path / "run").exists()


def test_bad_compare_numbers_are_refused_before_any_run(capsys, tmp_path):
    for flag, value, message in (
        ("--timeout", "inf", "--timeout must be a finite number, got inf"),
        ("--loss-tolerance", "nan", "--loss-tolerance must be a finite number, got nan"),
        ("--equivalence-margin", "inf", "--equivalence-margin must be a finite number, got inf"),
        # a setting every run checks, refused before the first run instead of by each
        ("--contention-threshold", 2, "--contention-threshold must be in (0, 1], got 2.0"),
    ):
        proc = call(capsys, "compare", "--preset", "smoke", "--output", tmp_path / "x", flag, value)
        assert (proc.returncode, proc.stderr.strip()) == (2, f"harness: {message}")
    assert not (tmp_path / "x").exists()


def test_a_model_config_of_wrong_types_or_ranges_names_the_file_and_key(tmp_path):
    tiny = dataclasses.asdict(NAMED_CONFIGS["bert-tiny"])
    path = tmp_path / "bert_config.json"
    for key, value, expected in (
        ("hidden_size", "128", "hidden_size must be an integer >= 1, got '128'"),
        ("num_hidden_layers", 2.0, "num_hidden_layers must be an integer >= 1, got 2.0"),
        ("num_attention_heads", 0, "num_attention_heads must be an integer >= 1, got 0"),
        ("vocab_size", 0, "vocab_size must be an integer >= 1, got 0"),
        ("type_vocab_size", True, "type_vocab_size must be an integer >= 1, got True"),
        ("hidden_dropout_prob", 1.0, "hidden_dropout_prob must be a probability in [0, 1), got 1.0"),
        ("attention_probs_dropout_prob", "0.1", "must be a finite number, got '0.1'"),
        ("initializer_range", 0, "initializer_range must be > 0, got 0"),
        ("hidden_act", 1, "hidden_act must be a string, got 1"),
    ):
        path.write_text(json.dumps({**tiny, key: value}))
        with pytest.raises(HarnessError) as caught:
            load_config(str(path))
        assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value)
    # NaN and Infinity are JSON to Python's reader
    path.write_text(json.dumps({**tiny, "layer_norm_eps": float("nan")}))
    with pytest.raises(HarnessError, match="layer_norm_eps must be a finite number, got nan"):
        load_config(str(path))
    path.write_text(json.dumps({**tiny, "hidden_dropout_prob": 0}))
    assert load_config(str(path)).hidden_dropout_prob == 0


def test_a_token_id_past_the_vocabulary_says_it_is_the_models(synth_dir):
    from harness.datasets.mlcommons import eval_batches, resolve_phase_data
    from harness.datasets.records import DataError

    data = resolve_phase_data(synth_dir, 1, 0.9, 4)
    with pytest.raises(DataError, match=r"expected values in \[0, 100\) \(the model's vocab_size\)"):
        next(iter(eval_batches(data, 4, 4, vocab_size=100)))


def test_a_name_too_long_for_the_file_system_is_one_line(capsys, synth_dir, tmp_path):
    long = tmp_path / ("a" * 256)
    expected = (
        f"harness: --output {long}: the name aaaaaaaaaaaaaaaa... is 256 bytes long; "
        "file names take at most 255"
    )
    for args in (
        ["train", *TINY, "--dataset", synth_dir],
        ["compare", "--preset", "smoke"],
        ["data", "synth", "--examples", 40, "--shards", 1],
    ):
        proc = call(capsys, *args, "--output", long)
        assert (proc.returncode, proc.stderr.strip()) == (2, expected)
    assert list(tmp_path.iterdir()) == []


def test_a_file_on_the_way_to_a_folder_to_write_is_one_line(capsys, monkeypatch, synth_dir, tmp_path):
    file = tmp_path / "file"
    file.write_text("mine\n")
    proc = call(capsys, "train", *TINY, "--dataset", synth_dir, "--output", file / "run")
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        f"harness: --output {file / 'run'}: {file} is a file; expected a directory",
    )
    monkeypatch.setenv("HARNESS_HOME", str(file / "home"))
    proc = call(capsys, "compare", "--preset", "smoke", "--output", tmp_path / "x")
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        f"harness: $HARNESS_HOME {file / 'home'}: {file} is a file; expected a directory",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and file.read_text() == "mine\n"


def test_cores_specs_say_what_is_wrong_with_them():
    from harness.machine.cores import resolve_cores

    first = min(os.sched_getaffinity(0))
    for spec, message in (
        ("5-3", "--cores 5-3: the range 5-3 runs backwards; expected LOW-HIGH"),
        ("", "--cores is empty: expected a list like 0-3,8 (or no --cores for the default)"),
        (" ", "--cores is empty"),
        ("0,,1", "--cores 0,,1: expected a list like 0-3,8"),
    ):
        with pytest.raises(HarnessError) as caught:
            resolve_cores(spec)
        assert str(caught.value).startswith(message)
    assert resolve_cores(f"{first}-{first}") == [first]


def test_an_unknown_backend_names_the_flag_it_came_from(capsys, synth_dir, tmp_path):
    proc = call(capsys, "compare", "--backends", "foo", "--output", tmp_path / "x")
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "harness: --backends foo: expected one of stock, fused, ipex",
    )
    proc = call(
        capsys, "train", *TINY, "--dataset", synth_dir, "--output", tmp_path / "r", "--backend", "foo"
    )
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "harness: --backend foo: expected one of stock, fused, ipex",
    )
    assert list(tmp_path.iterdir()) == []


SMALL = SynthSpec(examples=40, eval_examples=4, shards=2, seed=5)


def test_reuse_refuses_a_data_set_whose_files_are_not_those_it_lists(tmp_path):
    data = tmp_path / "data"
    synthesize(data, SMALL)
    assert synthesize(data, SMALL, reuse=True)["seed"] == 5
    first, second = data / "seq_128/part-00000-of-00002_128", data / "seq_512/part-00001-of-00002"
    second.write_bytes(second.read_bytes()[:100])
    with pytest.raises(HarnessError, match=rf"^{second}: has 100 bytes, not the \d+ synth.json records"):
        synthesize(data, SMALL, reuse=True)
    first.unlink()
    with pytest.raises(HarnessError, match=rf"^{first}: is missing; the data set in {data} is damaged"):
        synthesize(data, SMALL, reuse=True)
    changed = data / "eval/part-00000-of-00001"
    shutil.rmtree(data)
    synthesize(data, SMALL)
    body = bytearray(changed.read_bytes())
    body[-1] ^= 1
    changed.write_bytes(body)
    with pytest.raises(HarnessError, match=rf"^{changed}: differs from what synth.json records"):
        synthesize(data, SMALL, reuse=True)


def test_sigterm_removes_the_staging_folder(tmp_path, monkeypatch):
    original = synth._write

    def terminated(tmp, spec):
        original(tmp, spec)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(synth, "_write", terminated)
    with pytest.raises(SystemExit) as caught:
        synthesize(tmp_path / "data", SMALL)
    assert caught.value.code == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_later_synth_removes_only_staging_folders_of_dead_writers(tmp_path):
    dead = _dead_pid()
    left = {
        ".data.dead": f"{dead} 1\n",  # a synth killed with SIGKILL
        ".data.reused": f"{os.getpid()} 1\n",  # its pid now another process's
        ".data.alive": f"{os.getpid()} {synth._started(os.getpid())}\n",  # a synth still writing
        ".data.mine": None,  # no writer file: not the harness's
        ".other.dead": f"{dead} 1\n",  # another data set's
    }
    for name, writer in left.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "part-00000").write_bytes(b"x")
        if writer is not None:
            (tmp_path / name / synth.WRITER).write_text(writer)
    synthesize(tmp_path / "data", SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.alive", ".data.mine", ".other.dead", "data"]


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
