"""The contention sentinel on real processes: a run that shares its cores with a CPU hog is marked
contended everywhere it is shown, and the gate refuses to judge its throughput."""

import json
import os
import subprocess
import sys

from harness_cli import launch

from harness.results.tables import read_runs

HOG = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"


def test_a_run_beside_a_cpu_hog_is_contended_and_not_judged(capfd, synth_dir, tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    # one busy process per core the run is bound to: the run gets about half of each
    hogs = [
        subprocess.Popen([sys.executable, "-c", HOG], preexec_fn=lambda c=c: os.sched_setaffinity(0, [c]))
        for c in cores
    ]
    try:
        out = tmp_path / "cmp"
        proc = launch(
            capfd,
            "compare",
            "--preset",
            "smoke",
            "--precisions",
            "fp32",
            "--backends",
            "stock",
            "--phases",
            "1",
            "--steps",
            12,
            "--dataset",
            synth_dir,
            "--output",
            out,
            "--cores",
            ",".join(map(str, cores)),
        )
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((out / "runs" / "p1-fp32-r0" / "result.json").read_text())
    assert r["contended"] is True and r["cpu_available"] < r["contention_threshold"] == 0.9
    assert r["cpu_others_share"] > 0.25  # the hogs took a good part of the cores
    runs = read_runs(out / "runs.csv")
    assert bool(runs.loc[0, "contended"])
    assert f"[CONTENDED: {r['cpu_available']:.0%} of its cores]" in proc.stdout
    assert 'id="contended"' in (out / "report.html").read_text()

    gate = launch(capfd, "gate", "--current", out, "--baseline", out)
    assert gate.returncode == 3, gate.stdout + gate.stderr
    assert "not judged: the baseline and current run set's runs shared their cores" in gate.stdout
    assert "gate NOT JUDGED (contended)" in gate.stdout
    assert (out / "gate.md").read_text().startswith("## harness gate: NOT JUDGED")
