"""report.html: self-contained, with its tables and charts, rendered by a real headless Chromium."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from harness_cli import run

from harness.reports.html import verdicts
from harness.reports.tables import RUN_COLUMNS, runs_table

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def comparison(synth_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cmp") / "cmp"
    proc = run(
        "compare",
        "--preset",
        "smoke",
        "--precisions",
        "fp32,avx-fp32",
        "--dataset",
        synth_dir,
        "--output",
        out,
        "--steps",
        8,
        env={"HARNESS_FAULT": "crash@4:avx-fp32:2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_report_is_self_contained_and_complete(comparison):
    page = (comparison / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from a network
    assert "<script" not in page
    for anchor in (
        'id="verdicts"',
        'id="summary"',
        'id="throughput-chart"',
        'id="loss-phase1"',
        'id="loss-phase2"',
        'id="efficiency"',
        'id="isa"',
        'id="machine"',
        'id="problems"',
    ):
        assert anchor in page, anchor
    assert page.index('id="verdicts"') < page.index('id="summary"') < page.index('id="throughput-chart"')
    # the crashed run is shown as such, with the tail of its log
    assert 'p2-avx-fp32-r0</b> <span class="bad">crashed</span>' in page
    machine = json.loads((comparison / "machine.json").read_text())
    assert machine["cpu_model"] in page


def test_verdicts_name_speed_and_convergence(comparison):
    (verdict,) = verdicts(runs_table(comparison), tolerance=0.02)
    precision, css, text = verdict
    assert precision == "avx-fp32" and css == "bad" and "p2-avx-fp32-r0 crashed" in text
    proc = run("report", comparison, "--loss-tolerance", 2)
    assert proc.returncode == 2 and "--loss-tolerance must be in (0, 1)" in proc.stderr


def test_chromium_renders_the_report(comparison):
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("Debian's chromium package is not installed")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={comparison / 'chromium-profile'}",
    ]
    page = (comparison / "report.html").as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the DOM Chromium built holds the charts and tables
    assert dom.stdout.count("<polyline") >= 8 and 'id="throughput-chart"' in dom.stdout
    assert dom.stdout.count("<table") >= 4
    subprocess.run(
        [chromium, *flags, "--window-size=1200,2400", f"--screenshot={shot}", page],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000


def _copy_run_set(source: Path, target: Path, speed: float, started_at: str) -> None:
    """A copy of a comparison as if run at another time, every step `speed` times as fast."""
    shutil.copytree(source, target)
    for run_dir in (target / "runs").iterdir():
        metrics = run_dir / "metrics.jsonl"
        records = [json.loads(line) for line in metrics.read_text().splitlines()]
        for record in records:
            if "seq_per_s" in record:
                record["seq_per_s"] *= speed
        metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
        result_path = run_dir / "result.json"
        if result_path.is_file():
            result = json.loads(result_path.read_text())
            result["started_at"] = started_at
            result_path.write_text(json.dumps(result))


def test_run_sets_side_by_side_and_over_time(comparison, tmp_path):
    nightly = tmp_path / "nightly"
    _copy_run_set(comparison, nightly / "b-night", 0.5, "2026-11-02T01:00:00+00:00")
    _copy_run_set(comparison, nightly / "a-night", 1.0, "2026-11-01T01:00:00+00:00")
    page = tmp_path / "side.html"
    proc = run("report", nightly / "a-night", nightly / "b-night", "--output", page)
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = page.read_text()
    assert 'id="side-by-side-chart"' in html and 'id="machines"' in html
    # every matched configuration of the half-speed set shows as half the reference
    row = re.search(r"p1 fp32 bert-tiny 8x128</td>(.*?)</tr>", html).group(1)
    assert "0.500x" in row
    # the crashed run of both sets is named, not given a figure
    assert re.search(r"p2 avx-fp32 .*?</td><td class=\"bad\">crashed</td>", html)

    proc = run("report", nightly)
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = (nightly / "index.html").read_text()
    assert 'id="history-phase1"' in index and 'id="history-phase2"' in index
    # oldest first, each linking to its own re-rendered report
    assert index.index('href="a-night/report.html"') < index.index('href="b-night/report.html"')
    assert (nightly / "b-night" / "report.html").is_file()


def test_report_refuses_what_is_not_a_run_set(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run("report", tmp_path / "empty")
    assert proc.returncode == 2 and "holds no run sets" in proc.stderr
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "runs.csv").write_text("run_id,phase,precision\np1-fp32-r0,1,fp32\n")
    proc = run("report", tmp_path / "old", tmp_path / "old" / "runs.csv")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"harness: {tmp_path / 'old' / 'runs.csv'}: missing columns")


def _runs(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(RUN_COLUMNS)).astype(RUN_COLUMNS)


def test_a_mode_refused_here_is_a_warning_and_the_same_computation_is_noise():
    fp32 = {
        "run_id": "p1-fp32-r0",
        "phase": 1,
        "precision": "fp32",
        "backend": "stock",
        "status": "ok",
        "throughput_seq_per_s": 10.0,
        "final_loss": 9.0,
        "speedup_vs_fp32": 1.0,
        "loss_gap_vs_fp32": 0.0,
    }
    refused = {
        "run_id": "p1-bf16-r0",
        "phase": 1,
        "precision": "bf16",
        "backend": "stock",
        "status": "refused",
        "error": "exit code 2; last output: harness: --precision bf16: needs bf16",
    }
    same = {
        **fp32,
        "run_id": "p1-avx-fp32-r0",
        "precision": "avx-fp32",
        "speedup_vs_fp32": 1.3,
        "same_computation_as_fp32": True,
    }
    out = dict((p, (css, text)) for p, css, text in verdicts(_runs(fp32, refused, same), tolerance=0.02))
    assert out["bf16"] == ("warn", "not run here: --precision bf16: needs bf16")
    css, text = out["avx-fp32"]
    assert css == "muted" and text.startswith("same computation on this CPU as fp32") and "1.30x" in text
    # without the evidence, the same figures are a speed-up verdict
    ((precision, css, text),) = verdicts(_runs(fp32, {**same, "same_computation_as_fp32": False}), 0.02)
    assert (precision, css) == ("avx-fp32", "ok") and text.startswith("speed-up vs fp32 1.30x")
