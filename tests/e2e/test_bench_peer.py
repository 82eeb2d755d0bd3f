"""`harness bench peer` runs both implementations and a `harness train` run, and reports them."""

import json

import pytest
from harness_cli import launch


def assert_split(row: dict) -> None:
    """The row's step splits into parts that add up to it, GEMMs and optimizer among them."""
    split = row["time_split"]
    parts = [
        *split["gemm_s"].values(),
        split["attention_gemm_s"],
        split["other_compute_s"],
        split["optimizer_s"],
        split["data_wait_s"],
        split["harness_s"],
    ]
    assert sum(parts) == pytest.approx(split["step_s"], abs=1e-9)
    assert sum(split["gemm_s"].values()) > 0 and split["optimizer_s"] > 0


def test_peer_benchmark_reports_both_sides_and_the_overhead(capfd, synth_dir, tmp_path):
    out = tmp_path / "peer.json"
    proc = launch(
        capfd,
        "bench",
        "peer",
        "--model",
        "bert-tiny",
        "--precisions",
        "fp32",
        "--steps",
        3,
        "--warmup",
        1,
        "--top",
        4,
        "--rounds",
        2,
        "--gemms",
        "--dataset",
        synth_dir,
        "--json",
        out,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["impl"] for r in rows] == ["harness", "hugging-face", "harness train"]
    for r in rows:
        assert r["step_time_p10"] <= r["step_time_s"] <= r["step_time_p90"] and r["seq_per_s"] > 0
        assert r["rounds"] == 2 and r["steps"] == 6 and len(r["round_medians_s"]) == 2
    ours, hf, _ = rows
    assert ours["seq_len"] == hf["seq_len"] == 128 and ours["model_tflops_per_s"] > 0
    assert len(ours["top_operators"]) == 4 and ours["peak_rss_gib"] > 0
    assert "fp32: harness / Hugging Face = " in proc.stdout and "(per round: " in proc.stdout
    assert "fp32: harness overhead, harness train step " in proc.stdout
    assert "fp32: within the harness train steps: harness work " in proc.stdout
    train = rows[2]
    # the bare steps count the fresh pages they fault in; the train row has no such count
    assert all(isinstance(r["page_faults_per_step"], float) for r in (ours, hf))
    assert train["page_faults_per_step"] is None and "faults/step" in proc.stdout
    assert 0 < train["harness_time_fraction"] < 0.5 and 0 <= train["data_wait_fraction"] < 0.5
    assert "top operators, fp32 hugging-face" in proc.stdout
    # --gemms: one verbose step of each bare implementation, its GEMMs by shape
    for r in (ours, hf):
        assert r["gemms"]["step_s"] > sum(g["seconds"] for g in r["gemms"]["groups"]) > 0
        assert any(g["flops"] for g in r["gemms"]["groups"])
    assert "GEMMs of one fp32 harness step, verbose on: " in proc.stdout
    assert train["gemms"] is None
    # where one step of each went: the bare ones split the step --gemms recorded, harness train
    # its census step
    for r in rows:
        assert_split(r)
    assert all(r["gemms"]["step_s"] == r["time_split"]["step_s"] for r in (ours, hf))
    assert ours["time_split"]["data_wait_s"] == hf["time_split"]["data_wait_s"] == 0
    for impl in ("harness", "hugging-face", "harness train"):
        assert f"\nfp32 {impl}: step " in proc.stdout
    assert " s = GEMM " in proc.stdout and ", optimizer " in proc.stdout


def test_peer_benchmark_runs_our_step_on_the_fused_backend(capfd, kernels_home, synth_dir, tmp_path):
    out = tmp_path / "peer.json"
    proc = launch(
        capfd,
        "bench",
        "peer",
        "--model",
        "bert-tiny",
        "--precisions",
        "fp32",
        "--backend",
        "fused",
        "--steps",
        2,
        "--warmup",
        1,
        "--top",
        0,
        "--dataset",
        synth_dir,
        "--json",
        out,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the session's build, found by the parent's child and the workers: none builds again
    assert "building the fused kernels" not in proc.stderr
    rows = json.loads(out.read_text())
    assert [(r["impl"], r["backend"]) for r in rows] == [
        ("harness", "fused"),
        ("hugging-face", "transformers"),
        ("harness train", "fused"),
    ]
    assert "harness backend: fused" in proc.stdout
    # the split needs no --gemms: its verbose step is always recorded, its GEMM groups not kept
    for r in rows:
        assert_split(r)
    assert rows[0]["gemms"] is None and "\nfp32 harness: step " in proc.stdout
