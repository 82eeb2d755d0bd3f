"""`harness compare`: the plan, each run in its own process, failures recorded, resume, the tables."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from harness_cli import launch

from harness.results.files import read_result
from harness.results.tables import RUN_COLUMNS, read_runs, read_steps


def compare(capfd, monkeypatch, out, *args, fault=None, backends="stock"):
    """A smoke compare with this process as its parent; `fault` reaches its workers; `backends`
    None: the default (fused, built once into the default $HARNESS_HOME)."""
    if fault:
        monkeypatch.setenv("HARNESS_FAULT", fault)
    else:
        monkeypatch.delenv("HARNESS_FAULT", raising=False)
    # --allow-emulation: bf16 must run here even where the CPU has no bf16 instructions (marked emulated then)
    flags = ["--backends", backends] if backends else []
    return launch(capfd, "compare", "--preset", "smoke", "--output", out, "--allow-emulation", *flags, *args)


def test_smoke_comparison_of_three_precisions(capfd, monkeypatch, synth_dir, tmp_path):
    out = tmp_path / "cmp"
    # 6 steps a run, 3 of them timing warm-up: without AVX-512, emulated bf16 takes seconds a step.
    # The default backend, as the README's main command runs it: fused
    proc = compare(
        capfd,
        monkeypatch,
        out,
        *("--precisions", "fp32,avx-fp32,bf16", "--dataset", synth_dir, "--steps", 6),
        *("--roofline-size", 512),  # the peaks the session lacks: at 4096 a minute each
        backends=None,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = read_runs(out / "runs.csv")
    assert list(runs["run_id"]) == [
        "p1-fp32-fused-r0",
        "p1-avx-fp32-fused-r0",
        "p1-bf16-fused-r0",
        "p2-fp32-fused-r0",
        "p2-avx-fp32-fused-r0",
        "p2-bf16-fused-r0",
    ]
    assert set(runs["status"]) == {"ok"} and set(runs["backend"]) == {"fused"}
    assert dict(runs.dtypes.astype(str)) == RUN_COLUMNS  # stable dtypes on reading back
    assert list(runs["seq_len"]) == [128] * 3 + [512] * 3
    assert (runs.loc[runs.precision == "fp32", "speedup_vs_fp32"] == 1.0).all()
    assert runs["speedup_vs_fp32"].notna().all() and runs["loss_gap_vs_fp32"].notna().all()
    assert (runs["throughput_p10"] <= runs["throughput_seq_per_s"]).all()
    assert (runs["tokens_per_s"] == runs["throughput_seq_per_s"] * runs["seq_len"]).all()
    assert runs["isa_verified"].notna().all()
    assert set(runs["isa_cap"]) == {"AVX512_CORE_AMX", "AVX512_CORE_BF16"}
    assert not runs.loc[runs.precision == "avx-fp32", "amx_used"].any()
    # where each census step's time went: its parts add up to the step
    parts = ["gemm_s", "attention_gemm_s", "other_compute_s", "optimizer_s", "data_wait_s", "harness_s"]
    assert ((runs[parts].sum(axis=1) - runs["census_step_s"]).abs() < 1e-9).all()
    assert (runs["optimizer_s"] > 0).all()
    fp32 = runs[runs.precision == "fp32"]
    assert (fp32["gemm_s"] > 0).all() and (fp32["attention_gemm_s"] > 0).all()
    for row in fp32.itertuples():  # by library and ISA: the route's library (--fp32-gemm) among them
        units = dict(item.rsplit(" ", 1) for item in row.gemm_by_isa.split("; "))
        assert sum(map(float, units.values())) == pytest.approx(row.gemm_s, abs=1e-5)
        assert any(unit.startswith(f"{row.fp32_gemm}:") for unit in units)
    assert 'id="time-split-chart"' in (out / "report.html").read_text()
    # MFU and the speed of light on every native run: compare measured any peak the store lacked
    # first. An emulated run (bf16 on a CPU without bf16 instructions) has none, and said so
    is_emulated = runs["emulated"].fillna(False).astype(bool)
    native, emulated = runs[~is_emulated], runs[is_emulated]
    assert native["mfu"].notna().all() and native["speed_of_light_share"].notna().all()
    assert (native["speed_of_light_s"] > 0).all()
    assert emulated["mfu"].isna().all()
    assert ("[roofline] bf16 emulated here: no matmul peak measured" in proc.stderr) == (not emulated.empty)
    # the sentinel counts none of the harness's own processes (parent, worker, data loaders) as a
    # neighbour. The hypervisor's steal is left out: it is the host's, and on a shared VM it once
    # took 13% of a 1-second run here and flagged it contended
    results = [read_result(out / "runs" / run_id) for run_id in runs["run_id"]]
    assert all(r is not None and r.cpu_others_share < 0.1 for r in results)
    assert runs["contended"].notna().all()
    # fp32 GEMMs always run in a library that reports them; the census names where
    fp32_like = runs[runs.precision != "bf16"]
    assert fp32_like["gemm_isa"].notna().all() and fp32_like["kernels"].str.len().gt(0).all()
    # what the plan predicted of fp32 and avx-fp32 on this CPU, the runs bear out: the same kernels
    # and bit-identical losses where it said "same computation"; a verdict of noise in the report
    plan = json.loads((out / "plan.json").read_text())
    same = ["fp32", "avx-fp32"] in plan["same_computation"]
    assert list(runs.loc[runs.precision == "avx-fp32", "same_computation_as_fp32"]) == [same, same]
    if same:
        assert "fp32 and avx-fp32 run the same kernels on this CPU" in proc.stderr
        assert "same computation on this CPU as fp32+fused" in (out / "report.html").read_text()

    steps = read_steps(out / "steps.csv")
    assert len(steps) == 6 * 6
    assert steps.groupby("run_id")["step"].max().to_dict()["p2-bf16-fused-r0"] == 6
    assert steps["eval_mlm_accuracy"].notna().sum() == 6  # one evaluation per run, at its end

    # each phase-2 run started from its own precision's phase-1 model_save
    for precision in ("fp32", "avx-fp32", "bf16"):
        result = json.loads((out / "runs" / f"p2-{precision}-fused-r0" / "result.json").read_text())
        assert result["config"]["checkpoint"] == str(out / "runs" / f"p1-{precision}-fused-r0" / "model_save")
    assert "p2-bf16-fused-r0" in proc.stdout and "wrote" in proc.stdout
    # once phase 2 has read them, no checkpoint is left behind
    assert not list((out / "runs").glob("*/model_save")) and "deleted its model_save" in proc.stderr


def test_a_crashed_run_is_recorded_the_rest_go_on_and_resume_finishes(
    capfd, monkeypatch, synth_dir, tmp_path
):
    out = tmp_path / "cmp"
    common = ["--precisions", "fp32,avx-fp32", "--dataset", synth_dir, "--steps", 6]
    proc = compare(capfd, monkeypatch, out, *common, fault="crash@3:avx-fp32:1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = read_runs(out / "runs.csv").set_index("run_id")
    assert runs.loc["p1-avx-fp32-r0", "status"] == "crashed"
    assert runs.loc["p2-avx-fp32-r0", "status"] == "skipped"
    assert runs.loc["p1-fp32-r0", "status"] == runs.loc["p2-fp32-r0", "status"] == "ok"
    plan = json.loads((out / "plan.json").read_text())
    crashed = next(o for o in plan["outcomes"] if o["run_id"] == "p1-avx-fp32-r0")
    assert crashed["exit_code"] == 86 and "step 2/6" in crashed["log_tail"]

    again = compare(capfd, monkeypatch, out, *common)
    assert again.returncode == 2 and "holds a previous comparison; use --resume" in again.stderr
    resumed = compare(capfd, monkeypatch, out, *common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "p1-fp32-r0: ok (done before)" in resumed.stderr
    assert set(read_runs(out / "runs.csv")["status"]) == {"ok"}
    assert not list((out / "runs").glob("*/model_save"))


def test_a_hung_run_times_out_and_a_diverged_one_is_marked(capfd, monkeypatch, synth_dir, tmp_path):
    out = tmp_path / "cmp"
    proc = compare(
        capfd,
        monkeypatch,
        out,
        "--precisions",
        "fp32",
        "--phases",
        "1",
        "--dataset",
        synth_dir,
        "--steps",
        6,
        "--timeout",
        15,
        fault="hang@3",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(read_runs(out / "runs.csv")["status"]) == ["timeout"]

    out2 = tmp_path / "cmp2"
    proc = compare(
        capfd,
        monkeypatch,
        out2,
        "--precisions",
        "fp32",
        "--dataset",
        synth_dir,
        "--steps",
        6,
        fault="nan@4:fp32:1",
    )
    runs = read_runs(out2 / "runs.csv")
    assert list(runs["status"]) == ["diverged", "skipped"]
    assert pd.isna(runs.loc[1, "throughput_seq_per_s"])  # a run that did not happen has no figures


def test_a_full_disk_stops_the_comparison_with_one_line_and_resume_finishes_it(
    capfd, monkeypatch, synth_dir, small_disk
):
    """bert-tiny's checkpoint (about 53 MiB) does not fit on a 40 MiB disk; on 200 MiB it does."""
    disk = small_disk(40)
    out = disk / "cmp"
    common = ["--phases", "1", "--precisions", "fp32,avx-fp32", "--dataset", synth_dir, "--steps", 4]
    proc = compare(capfd, monkeypatch, out, *common)
    assert proc.returncode == 5
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(
        f"harness: p1-fp32-r0: {out}/runs/p1-fp32-r0/model_save: no space left on the device ("
    )
    plan = json.loads((out / "plan.json").read_text())
    assert [(o["run_id"], o["status"], o["exit_code"]) for o in plan["outcomes"]] == [
        ("p1-fp32-r0", "failed", 5)
    ]
    assert sorted(p.name for p in (out / "runs" / "p1-fp32-r0").iterdir()) == [
        "metrics.jsonl",
        "mllog.txt",
        "result.json",
    ]  # the part of the checkpoint written is gone
    subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)
    resumed = compare(capfd, monkeypatch, out, *common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert set(read_runs(out / "runs.csv")["status"]) == {"ok"}


def test_a_killed_compare_takes_its_run_with_it_and_resume_finishes(capfd, monkeypatch, synth_dir, tmp_path):
    """SIGKILL gives the parent no chance to pass anything on: the kernel sends the worker SIGTERM
    (PR_SET_PDEATHSIG), and it checkpoints and stops instead of training on beside the next run."""
    out = tmp_path / "cmp"
    common = ["--phases", "1", "--precisions", "fp32", "--backends", "stock"]
    common += ["--dataset", synth_dir, "--steps", 100]
    parent = subprocess.Popen(
        [sys.executable, "-m", "harness", "compare", "--preset", "smoke", "--output", out, *map(str, common)],
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in parent.stderr:
        if re.search(r"\] step \d+/100 ", line):  # training
            break
    (worker,) = map(int, Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 60
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{worker}").exists(), "the worker trained on after its parent was killed"
    run = out / "runs" / "p1-fp32-r0"
    assert json.loads((run / "result.json").read_text())["status"] == "interrupted"
    resumed = compare(capfd, monkeypatch, out, *common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert set(read_runs(out / "runs.csv")["status"]) == {"ok"}
