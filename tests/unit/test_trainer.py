"""The Trainer in this process, on bert-tiny: stops, divergence, bad data, refusals and resume,
without a worker's start-up. The journeys that need real processes (a crash, a phase 1 that
learns) are in tests/e2e/test_train.py."""

import dataclasses
import gzip
import json
import multiprocessing
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlcommons_writer import write_file

from harness import cli
from harness.datasets.synth import SynthSpec, synthesize
from harness.errors import HarnessError
from harness.files import drop_inherited_locks, folder_lock, write_atomic
from harness.launch.job import WorkerContext
from harness.precision.modes import get_precision
from harness.results.files import read_metrics, read_result
from harness.train import hooks, trainer
from harness.train.config import TrainConfig
from harness.train.setup import model_and_data, output_folder

CONTEXT = WorkerContext(False, (), None, False, "test CPU", "k", (0,))


class StopAfter:
    """A stop flag raised once `after` batches have been drawn, as a SIGINT there would be."""

    def __init__(self, after: int | None) -> None:
        self.after, self.drawn = after, 0

    @property
    def raised(self) -> bool:
        return self.after is not None and self.drawn >= self.after

    @raised.setter
    def raised(self, value: bool) -> None:
        if value:
            self.drawn = self.after or 0


@pytest.fixture
def run_in_process(monkeypatch):
    """train(cfg) in this process, stopped after `stop_after` batches (None: never)."""
    # oneDNN and MKL print their ISA header once per process: a second run in this one would see
    # none, so every run gets the headers recorded on a Zen 3 (tests/traces/zen3_avx2_fp32_step.txt)
    monkeypatch.setattr(hooks, "ceilings", lambda: ("Intel AVX2", "Intel(R) Architecture processors"))

    def run(cfg: TrainConfig, stop_after: int | None = None) -> int:
        flag = StopAfter(stop_after)
        monkeypatch.setattr(trainer, "StopFlag", lambda: flag)
        original = trainer.checked

        def counting(batch):
            flag.drawn += 1
            return original(batch)

        monkeypatch.setattr(trainer, "checked", counting)
        cfg.validate()
        return trainer.train(cfg, get_precision(cfg.precision), CONTEXT)

    return run


def tiny(dataset: Path, output: Path, **changes) -> TrainConfig:
    settings = dict(
        precision="fp32",
        model="bert-tiny",
        steps=6,
        batch_size=4,
        eval_examples=4,
        timing_warmup=1,
        data_workers=0,
    )
    return TrainConfig(phase=1, dataset=dataset, output=output, **{**settings, **changes})


@pytest.mark.parametrize("where", ["in the loop", "in the replay"])
def test_a_stop_anywhere_ends_the_run_interrupted(synth_dir, tmp_path, run_in_process, where):
    cfg = tiny(synth_dir, tmp_path / "run")
    assert run_in_process(cfg, stop_after=2) == 130
    first = read_result(cfg.output)
    assert first.status == "interrupted" and first.steps_completed == 2
    assert (cfg.output / "model_save" / "training_state.pt").is_file()
    if where == "in the replay":
        # the resumed run is stopped while it reads its way back to step 2
        assert run_in_process(dataclasses.replace(cfg, resume=True), stop_after=1) == 130
        again = read_result(cfg.output)
        assert again.status == "interrupted" and again.error is None
        steps, _ = read_metrics(cfg.output)
        assert [s.step for s in steps] == [1, 2]  # nothing new, nothing lost


def test_resume_refuses_other_settings_recovers_a_cut_save_and_leaves_a_finished_run_alone(
    synth_dir, tmp_path, run_in_process, capsys
):
    cfg = tiny(synth_dir, tmp_path / "run", save_every=2)
    assert run_in_process(cfg, stop_after=3) == 130
    resumed = dataclasses.replace(cfg, resume=True)
    with pytest.raises(HarnessError) as refused:
        run_in_process(dataclasses.replace(resumed, seed=7))
    assert str(refused.value) == (
        f"--resume: --seed is 7 but the run in {cfg.output} used 42; resume with the same settings"
    )
    (cfg.output / "model_save").rename(cfg.output / "model_save.old")  # as if cut mid-save
    assert run_in_process(resumed) == 0
    assert read_result(cfg.output).steps_completed == 6 and not (cfg.output / "model_save.old").exists()
    # once complete, --resume has nothing to do: it says so and changes nothing
    files = ("result.json", "metrics.jsonl", "mllog.txt")
    before = [(cfg.output / name).read_bytes() for name in files]
    capsys.readouterr()
    assert run_in_process(resumed) == 0
    assert f"--resume: {cfg.output} is already complete (6 steps); nothing to do" in capsys.readouterr().err
    assert [(cfg.output / name).read_bytes() for name in files] == before


def test_a_nan_loss_stops_the_run_as_diverged_before_the_bad_update(
    synth_dir, tmp_path, run_in_process, monkeypatch, capsys
):
    monkeypatch.setenv("HARNESS_FAULT", "nan@5")
    cfg = tiny(synth_dir, tmp_path / "run")
    assert run_in_process(cfg) == 3
    assert "step 5: loss is nan; stopping as diverged" in capsys.readouterr().err
    r = read_result(cfg.output)
    assert r.status == "diverged" and r.steps_completed == 4 and r.error is None
    assert '"status": "aborted"' in (cfg.output / "mllog.txt").read_text()
    assert not (cfg.output / "model_save").exists()


def test_bad_data_fails_the_run_naming_file_and_record(tmp_path, run_in_process):
    data = tmp_path / "data"
    for i in range(2):
        write_file(data / "seq_128" / f"part-{i:05d}", range(i * 40, i * 40 + 40))
    write_file(data / "eval" / "part-00000", range(100, 116), seq_len=512)  # clean: read before step 1
    part = data / "seq_128" / "part-00000"
    raw = bytearray(part.read_bytes())
    raw[-10] ^= 0x55  # inside the last record's payload
    part.write_bytes(bytes(raw))
    cfg = tiny(data, tmp_path / "run", steps=24, batch_size=8, data_workers=2)
    with pytest.raises(
        HarnessError, match=rf"^{re.escape(str(part))}: record 39 at byte \d+: data CRC mismatch$"
    ):
        run_in_process(cfg)
    r = read_result(cfg.output)
    assert r.status == "failed" and r.error.startswith(f"DataError: {part}: record 39")


def test_an_output_that_cannot_take_the_run_is_refused_in_one_line(synth_dir, tmp_path, small_disk):
    def refused(out: Path, message: str, **changes) -> None:
        with pytest.raises(HarnessError, match=message), output_folder(tiny(synth_dir, out, **changes)):
            pass

    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text("{}")
    refused(out, "holds a previous run; use an empty directory or --resume")
    refused(out / "result.json", r"--output .*/run/result.json: is a file; expected a directory for the run")
    refused(tmp_path / "none", r"--resume: .*/none does not exist; nothing to resume", resume=True)
    disk = small_disk(1)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    refused(disk / "run", r"--output .*/run: cannot be written \(Read-only file system\)")


def test_a_run_folder_is_refused_while_another_process_holds_it(synth_dir, tmp_path):
    """The lock is the kernel's (flock): it goes with its process, SIGKILL included."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with (
            pytest.raises(HarnessError, match=rf"--output {out}: in use by process {holder.pid}; wait until"),
            output_folder(tiny(synth_dir, out)),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    with output_folder(tiny(synth_dir, out)):  # free once its holder is gone
        assert not any(out.iterdir())  # and no lock file: the lock is on the folder itself


HOLD = """
import sys, time
from pathlib import Path
from harness.files import folder_lock
with folder_lock(Path(sys.argv[1]), "--output"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_phase2_refuses_what_is_not_a_completed_phase1_model_save(
    synth_dir, tmp_path, run_in_process, capsys
):
    args = ["train", "--phase", "2", "--precision", "fp32", "--dataset", str(synth_dir)]
    assert cli.main([*args, "--output", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "harness: phase 2 needs --checkpoint DIR: the model_save directory of a phase-1 run "
        "(OUTPUT_DIR/model_save)"
    ]

    def phase2(checkpoint: Path) -> TrainConfig:
        return dataclasses.replace(
            tiny(synth_dir, tmp_path / "p2"), phase=2, model=None, checkpoint=checkpoint
        )

    with pytest.raises(HarnessError, match=r"no config\.json; not a model_save directory"):
        model_and_data(phase2(tmp_path))
    p1 = tiny(synth_dir, tmp_path / "p1", steps=2)
    assert run_in_process(p1) == 0
    assert run_in_process(phase2(p1.output / "model_save")) == 0
    assert json.loads((tmp_path / "p2" / "result.json").read_text())["seq_len"] == 512
    with pytest.raises(HarnessError, match="holds phase 2; phase 2 needs the model_save"):
        model_and_data(phase2(tmp_path / "p2" / "model_save"))


def test_a_corrupt_eval_set_stops_the_run_before_its_first_step(tmp_path, run_in_process):
    data = tmp_path / "data"
    for i in range(2):
        write_file(data / "seq_128" / f"part-{i:05d}", range(i * 40, i * 40 + 40))
    bad = data / "eval" / "part-00000"
    write_file(bad, range(100, 116), seq_len=512)
    raw = bytearray(bad.read_bytes())
    raw[-10] ^= 0x55
    bad.write_bytes(bytes(raw))
    cfg = tiny(data, tmp_path / "run", eval_examples=16)
    with pytest.raises(
        HarnessError, match=rf"^{re.escape(str(bad))}: record 15 at byte \d+: data CRC mismatch$"
    ):
        run_in_process(cfg)
    assert not cfg.output.exists()  # nothing written: no result, no metrics, not even the folder


def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_the_result(
    synth_dir, tmp_path, run_in_process, small_disk
):
    """bert-tiny's checkpoint takes about 53 MiB: an 80 MiB disk holds one, not the second one
    that a save writes beside it before the rename."""
    cfg = tiny(synth_dir, small_disk(80) / "run", save_every=2)
    with pytest.raises(HarnessError) as full:
        run_in_process(cfg)
    assert full.value.exit_code == 5
    assert re.fullmatch(
        rf"{cfg.output}/model_save: no space left on the device \([\d.]+ MiB free, [\d.]+ MiB needed\)",
        str(full.value),
    )
    assert sorted(p.name for p in cfg.output.iterdir()) == [
        "metrics.jsonl",
        "mllog.txt",
        "model_save",
        "result.json",
    ]
    assert trainer.checkpoint.load_state(cfg.output / "model_save").step == 2  # the last good one
    r = read_result(cfg.output)
    assert r.status == "failed" and r.steps_completed == 4 and "no space left" in r.error


def test_a_result_that_does_not_fit_leaves_no_temporary_file(tmp_path):
    (tmp_path / "result.json.tmp").symlink_to("/dev/full")  # writes to it fail with ENOSPC
    with pytest.raises(HarnessError, match=r"result.json: no space left on the device \(") as full:
        write_atomic(tmp_path / "result.json", "{}\n")
    assert full.value.exit_code == 5 and not list(tmp_path.iterdir())


def test_resume_refuses_other_data_at_the_same_path(tmp_path, run_in_process):
    data = tmp_path / "data"
    synthesize(data, SynthSpec(examples=512, eval_examples=32, shards=2, seed=1))
    cfg = tiny(data, tmp_path / "run", save_every=2)
    assert run_in_process(cfg, stop_after=3) == 130
    resumed = dataclasses.replace(cfg, resume=True)
    shutil.rmtree(data)
    synthesize(data, SynthSpec(examples=512, eval_examples=32, shards=2, seed=2))
    with pytest.raises(HarnessError, match=rf"--resume: --dataset {data} holds other data than the run in"):
        run_in_process(resumed)
    shutil.rmtree(data)
    synthesize(data, SynthSpec(examples=512, eval_examples=32, shards=2, seed=1))  # the same data again
    assert run_in_process(resumed) == 0


@pytest.mark.parametrize("ruleset", ["4.1.0", "5.0.0"])
def test_the_mlperf_log_passes_the_compliance_checker_in_the_open_division(
    synth_dir, tmp_path, run_in_process, ruleset
):
    """mlperf-logging's own checker. Its 5.1.0 rules no longer list BERT among the benchmarks."""
    cfg = tiny(synth_dir, tmp_path / "run", eval_every=3, submission_org="a lab")
    assert run_in_process(cfg) == 0
    checker = [sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage", "training"]
    checked = subprocess.run(
        [*checker, "--ruleset", ruleset, str(cfg.output / "mllog.txt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # it writes compliance_checker.log there
    )
    assert checked.returncode == 0 and "SUCCESS" in checked.stderr + checked.stdout, checked.stderr[-2000:]
    events = [json.loads(line.removeprefix(":::MLLOG ")) for line in (cfg.output / "mllog.txt").open()]
    values = {e["key"]: e["value"] for e in events}
    assert (values["submission_org"], values["submission_division"]) == ("a lab", "open")
    assert values["submission_platform"] == "test CPU, 1 cores"
    stop = next(e for e in events if e["key"] == "run_stop")
    assert stop["metadata"]["status"] == "aborted"  # bert-tiny after 6 steps is far from 0.720
    assert [e["metadata"]["epoch_num"] for e in events if e["key"] == "eval_accuracy"] == [12, 24]


def test_a_gzip_compressed_data_set_trains_like_the_plain_one(tmp_path, run_in_process):
    """TensorFlow's TFRecordOptions(compression_type="GZIP"): each file one gzip stream."""
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    synthesize(plain, SynthSpec(examples=512, eval_examples=32, shards=2, seed=1))
    shutil.copytree(plain, packed)
    for part in packed.rglob("part-*"):
        part.write_bytes(gzip.compress(part.read_bytes()))
    losses = []
    for data in (plain, packed):
        cfg = tiny(data, tmp_path / f"run-{data.name}")
        assert run_in_process(cfg) == 0
        losses.append([s.loss for s in read_metrics(cfg.output)[0]])
    assert losses[0] == losses[1]  # the same examples in the same order


@pytest.mark.parametrize("drops", [True, False])
def test_a_forked_data_worker_does_not_keep_the_run_folder_locked(tmp_path, drops):
    """DataLoader workers are forked from the trainer and share its descriptors: unless they drop
    theirs, the lock outlives a trainer that crashed."""
    out = tmp_path / "run"
    ready = multiprocessing.get_context("fork").Event()

    def worker() -> None:
        if drops:
            drop_inherited_locks()
        ready.set()
        time.sleep(30)

    with folder_lock(out, "--output"):
        child = multiprocessing.get_context("fork").Process(target=worker)
        child.start()
        assert ready.wait(10)
    try:
        if drops:
            with folder_lock(out, "--output"):  # free: the holder let go, its worker holds nothing
                pass
        else:
            with pytest.raises(HarnessError, match="in use by process"), folder_lock(out, "--output"):
                pass
    finally:
        child.kill()
        child.join()


def test_bf16_pure_keeps_weights_and_moments_in_bf16_with_no_fp32_copy(synth_dir, tmp_path, run_in_process):
    import torch

    cfg = tiny(synth_dir, tmp_path / "run", precision="bf16-pure")
    assert run_in_process(cfg) == 0
    assert read_result(cfg.output).status == "ok"
    state = torch.load(cfg.output / "model_save" / "training_state.pt", weights_only=False)
    moments = [t for s in state["optimizer"]["state"].values() for t in s.values() if torch.is_tensor(t)]
    weights = torch.load(cfg.output / "model_save" / "pytorch_model.bin", weights_only=True)
    assert moments and {t.dtype for t in moments} == {torch.bfloat16}
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.bfloat16}
