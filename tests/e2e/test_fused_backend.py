"""--backend fused end to end: compare builds the kernels before its first run, and a fused run
trains like stock PyTorch from the same seed."""

import pytest
from harness_cli import launch, metrics

from harness.results.tables import read_runs


@pytest.mark.usefixtures("fused_ops")  # this process has loaded the kernels from another folder
def test_compare_builds_once_and_fused_follows_stock(capfd, monkeypatch, synth_dir, tmp_path):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))  # nothing built yet
    out = tmp_path / "cmp"
    proc = launch(
        capfd,
        "compare",
        "--preset",
        "smoke",
        "--phases",
        1,
        "--precisions",
        "fp32",
        "--backends",
        "stock,fused",
        "--steps",
        8,
        "--roofline-size",  # this home's MFU peak: at 4096 it takes a minute
        512,
        "--dataset",
        synth_dir,
        "--output",
        out,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # built by the parent, before the plan's first run: no run's steps pay for it
    assert proc.stderr.count("building the fused kernels") == 1
    assert proc.stderr.index("building the fused kernels") < proc.stderr.index("[1/2]")
    # one build, the one the workers load: a parent that had loaded the kernels from another
    # folder (this test process has) would compile a second one under another name, unseen
    (folder,) = (tmp_path / "home" / "kernels").iterdir()
    assert [p.name.split(".")[0] for p in folder.glob("*.so")] == ["harness_kernels"]
    runs = read_runs(out / "runs.csv")
    assert list(runs["run_id"]) == ["p1-fp32-r0", "p1-fp32-fused-r0"]
    assert list(runs["backend"]) == ["stock", "fused"] and set(runs["status"]) == {"ok"}
    stock, _ = metrics(out / "runs" / "p1-fp32-r0")
    fused, _ = metrics(out / "runs" / "p1-fp32-fused-r0")
    assert len(stock) == len(fused) == 8
    # the same model, data and initial weights; the fused layers draw their dropout masks from
    # another generator (the same keep probability) and LAMB sums in another order, so the runs
    # differ by dropout's noise: every step within 1%, their mean loss within 0.1% (bert-tiny
    # here: at most 0.2% and 0.005% over 60 steps, docs/fused.md)
    for s, f in zip(stock, fused, strict=True):
        assert abs(f["loss"] - s["loss"]) <= 0.01 * s["loss"], (s["step"], s["loss"], f["loss"])
    mean = [sum(r["loss"] for r in run) / len(run) for run in (stock, fused)]
    assert abs(mean[1] - mean[0]) <= 1e-3 * mean[0]
