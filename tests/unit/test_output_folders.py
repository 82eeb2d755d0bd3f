"""Output folders: compare and train write only into a new, empty or their own folder, a refusal
leaves nothing behind, and the reports take a run set with failed runs or symlinked folders."""

import json
import shutil
from pathlib import Path

import pytest
from harness_cli import call

from harness.cli import report
from harness.errors import HarnessError
from harness.files import folder_lock
from harness.plan.executor import check_output
from harness.reports.history import find_runsets
from harness.results.files import read_result, write_result
from harness.results.tables import read_runs
from harness.train.config import TrainConfig
from harness.train.setup import model_and_data, output_folder

SMOKE = ["compare", "--preset", "smoke", "--precisions", "fp32", "--phases", "1"]


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under folder and its content (None: a folder)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))
    }


def refused(capsys, *args: object) -> str:
    """The one line a refusal prints, exit 2."""
    done = call(capsys, *args)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def test_compare_refuses_a_folder_it_did_not_write_and_touches_nothing(capsys, tmp_path):
    out = tmp_path / "mine"
    (out / "runs" / "p1-fp32-r0").mkdir(parents=True)
    (out / "report.html").write_text("my report")
    (out / "runs.csv").write_text("my,table\n")
    (out / "runs" / "p1-fp32-r0" / "notes.txt").write_text("my notes")
    before = tree(out)
    line = refused(capsys, *SMOKE, "--output", out)
    assert line == (
        f"harness: --output {out}: is not empty and holds no comparison (no plan.json); "
        "choose a new or empty directory\n"
    )
    assert tree(out) == before
    # --output /: the check only reads, so the root can stand in for itself
    with pytest.raises(HarnessError, match=r"^--output /: is not empty and holds no comparison"):
        check_output(Path("/"), resume=False)
    (tmp_path / "file").write_text("x")
    line = refused(capsys, *SMOKE, "--output", tmp_path / "file")
    assert (
        line
        == f"harness: --output {tmp_path / 'file'}: {tmp_path / 'file'} is a file; expected a directory\n"
    )


def test_compare_resume_needs_a_plan_and_touches_nothing_without_one(capsys, runsets):
    out = runsets / "report"
    (out / "plan.json").unlink()
    before = tree(out)
    args = ["compare", "--preset", "smoke", "--precisions", "fp32,avx-fp32", "--steps", "8", "--resume"]
    line = refused(capsys, *args, "--output", out)
    assert line == f"harness: --resume: {out} holds no plan.json; there is no comparison to finish\n"
    assert tree(out) == before
    # nor is a folder that does not exist created to be "resumed"
    refused(capsys, *args, "--output", runsets / "new" / "cmp")
    assert not (runsets / "new").exists()


def test_train_names_what_is_wrong_with_its_output_folder(tmp_path):
    def refusal(output: Path) -> str:
        cfg = TrainConfig(phase=1, precision="fp32", dataset=tmp_path, output=output)
        with pytest.raises(HarnessError) as info:
            cfg.refuse_previous_run()
        return str(info.value)

    assert refusal(Path("/")) == (
        "--output /: is not empty and holds no run of this harness (no result.json, metrics.jsonl, "
        "model_save); use a new or empty directory"
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    assert refusal(run) == f"--output {run}: holds a previous run; use an empty directory or --resume"


def test_a_run_refused_for_its_settings_leaves_no_output_folder(tmp_path):
    """The worker's order: the output folder is taken, then the data checked (an empty DATASET_DIR)."""
    (tmp_path / "data").mkdir()
    out = tmp_path / "a" / "b" / "run"
    cfg = TrainConfig(phase=1, precision="fp32", dataset=tmp_path / "data", output=out, model="bert-tiny")
    with pytest.raises(HarnessError, match="seq_128: dataset directory does not exist"), output_folder(cfg):
        model_and_data(cfg)
    assert not (tmp_path / "a").exists()
    # a folder that was there before stays, and so does one the block wrote in
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), folder_lock(tmp_path / "kept", "--output"):
        raise RuntimeError
    with pytest.raises(RuntimeError), folder_lock(tmp_path / "written", "--output"):
        (tmp_path / "written" / "result.json").write_text("{}")
        raise RuntimeError
    assert (tmp_path / "kept").is_dir() and (tmp_path / "written" / "result.json").is_file()


def fp32_phase2_crashed(runsets: Path) -> Path:
    """The checked-in set with the phase-2 runs' fates swapped: fp32 crashed at step 4 (its
    metrics cut there, no result), avx-fp32 finished ok."""
    out = runsets / "report"
    fp32, avx = out / "runs" / "p2-fp32-r0", out / "runs" / "p2-avx-fp32-r0"
    ok = read_result(fp32)
    (fp32 / "result.json").unlink()
    fp32_metrics, avx_metrics = (fp32 / "metrics.jsonl").read_text(), (avx / "metrics.jsonl").read_text()
    (fp32 / "metrics.jsonl").write_text(avx_metrics)
    (avx / "metrics.jsonl").write_text(fp32_metrics)
    ok.precision, ok.config = "avx-fp32", {**ok.config, "precision": "avx-fp32", "output": str(avx)}
    write_result(avx, ok)
    plan = json.loads((out / "plan.json").read_text())
    outcomes = {o["run_id"]: o for o in plan["outcomes"]}
    outcomes["p2-fp32-r0"], outcomes["p2-avx-fp32-r0"] = (
        {**outcomes["p2-avx-fp32-r0"], "run_id": "p2-fp32-r0"},
        {**outcomes["p2-fp32-r0"], "run_id": "p2-avx-fp32-r0"},
    )
    plan["outcomes"] = list(outcomes.values())
    (out / "plan.json").write_text(json.dumps(plan))
    return out


def test_a_set_whose_fp32_phase2_crashed_is_reported(capsys, runsets):
    out = fp32_phase2_crashed(runsets)
    done = call(capsys, "report", out)
    assert done.returncode == 0, done.stderr
    runs = read_runs(out / "runs.csv").set_index("run_id")
    assert runs.loc["p2-fp32-r0", "status"] == "crashed" and runs.loc["p2-avx-fp32-r0", "status"] == "ok"
    page = (out / "report.html").read_text()
    assert 'p2-fp32-r0</b> <span class="bad">crashed</span>' in page
    assert "no fp32 run to compare with" in page  # phase 2's verdict
    # phase 2's convergence chart draws avx-fp32 alone, and says why there is no band
    assert 'id="conv-eval_mlm_accuracy-phase2"' in page and "avx-fp32 seed 0" in page
    assert "no fp32 run evaluated in this phase" in page


def test_a_folder_of_sets_without_an_ok_fp32_run_is_indexed(capsys, runsets):
    nightly = runsets / "nightly"
    nightly.mkdir()
    shutil.move(fp32_phase2_crashed(runsets), nightly / "crashed")
    shutil.copytree(runsets / "baseline", nightly / "nofp32")
    plan = json.loads((nightly / "nofp32" / "plan.json").read_text())
    for o in plan["outcomes"]:
        if o["run_id"].startswith("p1-fp32"):
            o.update(status="crashed", exit_code=86)
            (nightly / "nofp32" / "runs" / o["run_id"] / "result.json").unlink()
    (nightly / "nofp32" / "plan.json").write_text(json.dumps(plan))
    done = call(capsys, "report", nightly)
    assert done.returncode == 0, done.stderr
    assert (nightly / "index.html").is_file() and (nightly / "nofp32" / "report.html").is_file()


def test_symlinked_folders_list_no_set_twice(capsys, runsets):
    nightly = runsets / "nightly"
    nightly.mkdir()
    for name in ("baseline", "again"):
        shutil.copytree(runsets / name, nightly / name)
    (nightly / "self").symlink_to(nightly)
    (nightly / "latest").symlink_to(nightly / "again")
    (nightly / "loop").mkdir()
    (nightly / "loop" / "back").symlink_to(nightly)
    assert find_runsets(nightly) == [nightly / "again", nightly / "baseline"]
    done = call(capsys, "report", nightly)
    assert done.returncode == 0, done.stderr
    table = (nightly / "index.html").read_text().split('id="runsets"')[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + 2  # the header and one row a set


def test_ctrl_c_before_a_worker_runs_exits_130_in_one_line(capsys, monkeypatch):
    def interrupted(args) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "run", interrupted)
    try:
        done = call(capsys, "report", "anything")
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt left main: the user sees its traceback")
    assert (done.returncode, done.stderr) == (130, "harness: interrupted\n")
