"""What a failure leaves a user with, on real processes: a comparison whose fp32 phase 2 crashed is
still reported, and a Ctrl-C while a worker starts ends it as interrupted, without a traceback."""

from harness_cli import launch

from harness.results.tables import read_runs


def test_a_crashed_fp32_phase2_leaves_the_rest_of_the_set_reported(capfd, monkeypatch, synth_dir, tmp_path):
    out = tmp_path / "cmp"
    monkeypatch.setenv("HARNESS_FAULT", "crash@3:fp32:2")
    done = launch(
        capfd,
        "compare",
        "--preset",
        "smoke",
        "--precisions",
        "fp32,avx-fp32",
        "--phases",
        "1,2",
        "--steps",
        4,
        "--dataset",
        synth_dir,
        "--output",
        out,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    runs = read_runs(out / "runs.csv").set_index("run_id")
    assert runs.loc["p2-fp32-r0", "status"] == "crashed"
    assert set(runs.drop(index="p2-fp32-r0")["status"]) == {"ok"}
    page = (out / "report.html").read_text()
    assert 'p2-fp32-r0</b> <span class="bad">crashed</span>' in page and "avx-fp32 seed 0" in page
