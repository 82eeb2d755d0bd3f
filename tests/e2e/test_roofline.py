"""`harness roofline`: a peak per mode, measured in its own worker, found again by training runs."""

import json
import re

from harness_cli import launch, result

from harness.results.files import read_metrics
from harness.results.time_split import speed_of_light

TINY = ["--model", "bert-tiny", "--steps", 3, "--batch-size", 4, "--eval-examples", 4]


def test_roofline_measures_each_mode_and_training_reports_mfu(capfd, monkeypatch, synth_dir, tmp_path):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    proc = launch(
        capfd,
        "roofline",
        "--precisions",
        "fp32,avx-fp32",
        "--size",
        256,
        "--repeats",
        3,
        "--allow-emulation",
    )
    assert proc.returncode == 0, proc.stderr
    assert "fp32 " in proc.stdout and "avx-fp32 " in proc.stdout and "stored in" in proc.stdout
    store = json.loads((tmp_path / "home" / "roofline.json").read_text())
    (machine,) = store
    # keyed by the machine's fingerprint, not its model string (a Zen 3 and a Zen 5 VM share that)
    assert "family=" in machine and "flags_digest=" in machine and " threads | torch " in machine
    assert set(store[machine]) == {"fp32", "avx-fp32"}
    fp32 = store[machine]["fp32"]
    assert fp32["gflops_p10"] <= fp32["gflops"] <= fp32["gflops_p90"] and fp32["gflops"] > 0
    assert fp32["dtype"] == "float32" and fp32["size"] == 256
    # every path fp32 may take is measured, the library named from its own verbose output, and the
    # peak is the best of them
    paths = {p["path"]: p for p in fp32["paths"]}
    assert set(paths) == {"torch.mm", "oneDNN linear"}
    assert paths["oneDNN linear"]["library"] == "onednn" and paths["torch.mm"]["library"] in ("mkl", "onednn")
    assert fp32["gflops"] == max(p["gflops"] for p in paths.values())
    assert (fp32["path"], fp32["library"]) == next(
        (p["path"], p["library"]) for p in paths.values() if p["gflops"] == fp32["gflops"]
    )
    for p in paths.values():
        assert f"fp32       float32   {p['path']:<14} {p['library']:<8}" in proc.stdout
    best = f"fp32: MFU divides by {fp32['gflops']:.1f} GFLOP/s, {fp32['path']} ({fp32['library']})"
    assert best in proc.stdout
    # beside the peak, the bandwidth the optimizer streams at
    assert fp32["stream_p10"] <= fp32["stream_gbytes_per_s"] <= fp32["stream_p90"] and fp32["stream_mib"] > 0
    assert f"fp32: the optimizer streams at {fp32['stream_gbytes_per_s']:.1f} GB/s" in proc.stdout

    out = tmp_path / "run"
    proc = launch(
        capfd, "train", "--phase", 1, "--precision", "fp32", *TINY, "--dataset", synth_dir, "--output", out
    )
    assert proc.returncode == 0, proc.stderr
    r = result(out)
    assert r.roofline_gflops == fp32["gflops"]
    assert r.mfu == r.model_tflops_per_s * 1e3 / fp32["gflops"]
    # the speed of light: the census step's GEMM FLOPs at the peak, LAMB's bytes at the bandwidth
    census = next(s for s in read_metrics(out)[0] if s.step == r.census_step)
    assert r.stream_gbytes_per_s == fp32["stream_gbytes_per_s"] and r.optimizer_bytes == r.parameters * 44
    assert r.speed_of_light_s == speed_of_light(
        census.model_flops, fp32["gflops"], r.optimizer_bytes, fp32["stream_gbytes_per_s"]
    )
    assert r.speed_of_light_share == r.speed_of_light_s / r.step_time_median_s


def test_modes_the_machine_lacks_are_skipped_and_named(capfd, monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    proc = launch(capfd, "roofline", "--precisions", "fp32,bf16", "--size", 128, "--repeats", 2)
    assert proc.returncode == 0, proc.stderr
    store = json.loads((tmp_path / "home" / "roofline.json").read_text())
    (peaks,) = store.values()
    if "bf16" not in peaks:  # a machine without bf16 instructions
        assert "skipped: bf16 (needs bf16 (native bf16 GEMMs: usable AMX-BF16 or AVX512_BF16)" in proc.stdout
    assert "fp32" in peaks


def test_bad_roofline_input_exits_2(capfd):
    proc = launch(capfd, "roofline", "--size", 8)
    assert proc.returncode == 2 and proc.stderr.strip() == "harness: --size must be >= 64 and --repeats >= 1"


def test_compare_measures_a_missing_roofline_once_before_its_plan(capfd, monkeypatch, synth_dir, tmp_path):
    """Issue 37: MFU on every report, the roofline measured first where none is stored."""
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    flags = ["--preset", "smoke", "--phases", "1", "--precisions", "fp32", "--backends", "stock"]
    flags += ["--steps", 4]
    flags += ["--roofline-size", 128, "--dataset", synth_dir]
    first = launch(capfd, "compare", *flags, "--output", tmp_path / "a")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "[roofline] no matmul peak stored for fp32 on this machine" in first.stderr
    assert re.search(r"\[roofline\] fp32: measured in \d+ s, stored", first.stderr)
    # before the plan: its first run starts after the peak is stored
    assert first.stderr.index("[roofline] fp32: measured") < first.stderr.index("[1/1 p1-fp32-r0]")
    (peaks,) = json.loads((tmp_path / "home" / "roofline.json").read_text()).values()
    assert peaks["fp32"]["size"] == 128
    r = result(tmp_path / "a" / "runs" / "p1-fp32-r0")
    assert r.mfu == r.model_tflops_per_s * 1e3 / peaks["fp32"]["gflops"]
    again = launch(capfd, "compare", *flags, "--output", tmp_path / "b")
    assert again.returncode == 0 and "[roofline]" not in again.stderr
