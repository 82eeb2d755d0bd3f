"""report.html, the side-by-side and history pages, in process, on a checked-in smoke compare
(tests/fixtures/runsets/README.md): self-contained, complete, and the same figures as the gate."""

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from harness_cli import call

from harness import cli
from harness.reports.html import verdicts
from harness.results.files import metrics_records, read_result, write_metrics, write_result
from harness.results.records import PlannedModes
from harness.results.runsets import run_rates
from harness.results.stats import ratio
from harness.results.tables import RUN_COLUMNS, runs_table, summary_lines


@pytest.fixture
def comparison(runsets) -> Path:
    """A smoke compare (fp32 and avx-fp32, phases 1 and 2, 8 steps) whose phase-2 avx-fp32 run
    crashed, its tables and report.html rendered again from its run files."""
    out = runsets / "report"
    assert cli.main(["report", str(out)]) == 0
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


def test_a_smoke_or_default_preset_makes_no_convergence_claim(comparison):
    """Their runs evaluate once, at their end: a speed measurement, not evidence of convergence."""
    page = (comparison / "report.html").read_text()
    assert "convergence not judged: the preset (bert-tiny, 20 + 10 steps" in page
    assert "Convergence not judged: the preset" in page
    for claim in ("within 2%", "OUTSIDE", "does not reach", "reaches", 'id="equivalence"'):
        assert claim not in page, claim


def test_verdicts_name_speed_and_convergence(capsys, comparison):
    out = {label: (css, text) for label, css, text in verdicts(runs_table(comparison), tolerance=0.02)}
    # a verdict per phase: phase 1's runs finished, phase 2's crashed
    assert set(out) == {"p1 avx-fp32", "p2 avx-fp32"}
    css, text = out["p2 avx-fp32"]
    assert css == "bad" and "p2-avx-fp32-r0 crashed" in text
    assert out["p1 avx-fp32"][0] != "bad"
    proc = call(capsys, "report", comparison, "--loss-tolerance", 2)
    assert proc.returncode == 2 and "--loss-tolerance must be in (0, 1)" in proc.stderr


def _copy_run_set(source: Path, target: Path, speed: float, started_at: str) -> None:
    """A copy of a comparison as if run at another time, every step `speed` times as fast."""
    shutil.copytree(source, target)
    for run_dir in (target / "runs").iterdir():
        records = metrics_records(run_dir)
        for record in records:
            if "seq_per_s" in record:
                record["seq_per_s"] *= speed
        write_metrics(run_dir, records)
        result = read_result(run_dir)
        if result is not None:
            scaled = {
                key: getattr(result, key) * speed
                for key in ("throughput_seq_per_s", "throughput_p10", "throughput_p90")
                if getattr(result, key) is not None
            }
            write_result(run_dir, replace(result, started_at=started_at, **scaled))


def test_run_sets_side_by_side_and_over_time(capsys, comparison, tmp_path):
    nightly = tmp_path / "nightly"
    _copy_run_set(comparison, nightly / "b-night", 0.5, "2026-11-02T01:00:00+00:00")
    _copy_run_set(comparison, nightly / "a-night", 1.0, "2026-11-01T01:00:00+00:00")
    page = tmp_path / "side.html"
    proc = call(capsys, "report", nightly / "a-night", nightly / "b-night", "--output", page)
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = page.read_text()
    assert 'id="side-by-side-chart"' in html and 'id="machines"' in html
    # every matched configuration of the half-speed set shows as half the reference
    row = re.search(r"p1 fp32 bert-tiny 8x128</td>(.*?)</tr>", html).group(1)
    assert "0.500x" in row
    # the crashed run of both sets is named, not given a figure
    assert re.search(r"p2 avx-fp32 .*?</td><td class=\"bad\">crashed</td>", html)

    proc = call(capsys, "report", nightly)
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = (nightly / "index.html").read_text()
    assert 'id="history-phase1"' in index and 'id="history-phase2"' in index
    # oldest first, each linking to its own re-rendered report
    assert index.index('href="a-night/report.html"') < index.index('href="b-night/report.html"')
    assert (nightly / "b-night" / "report.html").is_file()


def test_report_refuses_what_is_not_a_run_set(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = call(capsys, "report", tmp_path / "empty")
    assert proc.returncode == 2 and "holds no run sets" in proc.stderr
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "runs.csv").write_text("run_id,phase,precision\np1-fp32-r0,1,fp32\n")
    proc = call(capsys, "report", tmp_path / "old", tmp_path / "old" / "runs.csv")
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
        "throughput_seq_per_s": 13.0,
        "speedup_vs_fp32": 1.3,
        "same_computation_as_fp32": True,
    }
    out = dict((p, (css, text)) for p, css, text in verdicts(_runs(fp32, refused, same), tolerance=0.02))
    assert out["bf16"] == ("warn", "not run here: --precision bf16: needs bf16")
    css, text = out["p1 avx-fp32"]
    assert css == "muted" and text.startswith("same computation on this CPU as fp32") and "1.300x" in text
    # without the evidence, one run a side is a figure, not a verdict: grey, no colour
    ((label, css, text),) = verdicts(_runs(fp32, {**same, "same_computation_as_fp32": False}), 0.02)
    assert (label, css) == ("p1 avx-fp32", "muted") and text.startswith("speed-up 1.300x (1/1 runs")
    assert "not tested" in text
    # a run set whose convergence is not judged: its loss gap colours nothing
    far = {**same, "same_computation_as_fp32": False, "final_loss": 12.0, "loss_gap_vs_fp32": 3.0}
    ((label, css, text),) = verdicts(_runs(fp32, far), None)
    assert css == "muted" and text.endswith("; convergence not judged")
    assert verdicts(_runs(fp32, far), 0.02)[0][1] == "bad"


def _repeats(base: dict, precision: str, phase: int, speeds: list[float]) -> list[dict]:
    return [
        {
            **base,
            "run_id": f"p{phase}-{precision}-r{i}",
            "phase": phase,
            "repeat": i,
            "precision": precision,
            "throughput_seq_per_s": speed,
        }
        for i, speed in enumerate(speeds)
    ]


def test_verdicts_are_per_phase_and_coloured_only_when_significant():
    base = {"backend": "stock", "status": "ok", "final_loss": 9.0, "loss_gap_vs_fp32": 0.0}
    rows = [
        *_repeats(base, "fp32", 1, [10.0, 10.4, 9.8, 10.1, 9.9]),
        *_repeats(base, "bf16", 1, [15.2, 14.8, 15.5, 15.0, 14.9]),
        *_repeats(base, "fp32", 2, [2.0, 2.1, 1.9, 2.05, 1.95]),
        *_repeats(base, "bf16", 2, [1.4, 2.6, 1.8, 2.3, 2.0]),
    ]
    out = {label: (css, text) for label, css, text in verdicts(_runs(*rows), 0.02)}
    # phase 1 is significantly faster, phase 2's interval straddles 1: two verdicts, not one pooled
    assert out["p1 bf16"][0] == "good" and out["p1 bf16"][1].startswith("faster: 1.5")
    assert "95% CI" in out["p1 bf16"][1] and "5/5 runs" in out["p1 bf16"][1]
    assert out["p2 bf16"][0] == "muted" and out["p2 bf16"][1].startswith("no significant difference")
    slower = [*rows[:5], *_repeats(base, "bf16", 1, [7.0, 7.2, 6.9, 7.1, 7.3])]
    ((label, css, text),) = verdicts(_runs(*slower), 0.02)
    assert (label, css) == ("p1 bf16", "bad") and text.startswith("SLOWER: 0.7")


def test_a_backends_bf16_is_judged_against_its_own_fp32_and_its_fp32_against_stocks():
    base = {"status": "ok", "final_loss": 9.0, "loss_gap_vs_fp32": 0.0}
    rows = [
        *_repeats({**base, "backend": "stock"}, "fp32", 1, [10.0, 10.1, 9.9]),
        *_repeats({**base, "backend": "stock"}, "bf16", 1, [20.0, 20.2, 19.8]),
        *_repeats({**base, "backend": "fused"}, "fp32", 1, [13.0, 13.1, 12.9]),
        *_repeats({**base, "backend": "fused"}, "bf16", 1, [39.0, 39.3, 38.7]),
    ]
    for i, row in enumerate(rows):
        row["run_id"] = f"{row['run_id']}-{row['backend']}-{i}"
    out = {label: text for label, _, text in verdicts(_runs(*rows), 0.02)}
    assert set(out) == {"p1 bf16", "p1 fp32+fused", "p1 bf16+fused"}
    assert out["p1 bf16"].startswith("faster: 2.0")  # 20 / 10: against stock fp32
    assert out["p1 fp32+fused"].startswith("faster: 1.3") and "of fp32's" in out["p1 fp32+fused"]
    # 39 / 13 = 3.0x against fp32+fused, not 3.9x against stock fp32: what bf16 buys on one backend
    assert out["p1 bf16+fused"].startswith("faster: 3.0") and "of fp32+fused's" in out["p1 bf16+fused"]


def test_each_mode_is_measured_against_fp32_of_its_own_backend_where_planned():
    planned = PlannedModes(
        (("fp32", "stock"), ("bf16", "stock"), ("fp32", "fused"), ("bf16", "fused"), ("bf16", "ipex"))
    )
    assert planned.reference("bf16", "fused") == ("fp32", "fused")
    assert planned.reference("fp32", "fused") == ("fp32", "stock")
    assert planned.reference("bf16", "ipex") == ("fp32", "stock")  # no fp32+ipex planned
    assert planned.reference("bf16", "stock") == ("fp32", "stock")
    assert planned.reference("fp32", "stock") == ("fp32", "stock")
    assert planned.band() == ("fp32", "stock")
    fused_only = PlannedModes((("bf16", "fused"), ("fp32", "fused")))  # the default backend's plan
    assert fused_only.reference("fp32", "fused") == ("fp32", "fused")
    assert fused_only.reference("bf16", "fused") == ("fp32", "fused")
    assert fused_only.band() == ("fp32", "fused")
    assert PlannedModes((("bf16", "stock"),)).band() is None


def test_report_side_by_side_and_gate_show_the_same_median_and_ratio(capsys, comparison, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _copy_run_set(comparison, a, 1.0, "2026-11-01T01:00:00+00:00")
    _copy_run_set(comparison, b, 0.8, "2026-11-02T01:00:00+00:00")
    for folder in (a, b):
        assert call(capsys, "report", folder).returncode == 0
    side = tmp_path / "side.html"
    assert call(capsys, "report", a, b, "--output", side).returncode == 0
    proc = call(
        capsys,
        "gate",
        *("--baseline", a, "--current", b, "--baselines-dir", tmp_path / "saved"),
        *("--max-regression", "50%", "--min-speedup", "avx-fp32/fp32=0.1"),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the fixture's phase-2 avx-fp32 crashed
    checks = json.loads((b / "gate.json").read_text())["checks"]
    runs = runs_table(a)
    median = float(runs.loc[runs.run_id == "p1-fp32-r0", "throughput_seq_per_s"].iloc[0])
    avx = float(runs.loc[runs.run_id == "p1-avx-fp32-r0", "throughput_seq_per_s"].iloc[0])

    # the median: report.html's summary, the side-by-side row, the gate's figures
    report_row = re.search(r"<td[^>]*>p1-fp32-r0</td>(.*?)</tr>", (a / "report.html").read_text()).group(1)
    assert f"{median:.3f}" in report_row
    side_row = re.search(r"p1 fp32 bert-tiny 8x128</td>(.*?)</tr>", side.read_text()).group(1)
    assert side_row.startswith(f"<td>{median:.3f} (")
    gate_check = next(c for c in checks if c["kind"] == "throughput" and c["run"].startswith("p1 fp32"))
    assert gate_check["figures"]["baseline_seq_per_s"] == pytest.approx(median)

    # the ratio between sets: the side-by-side page and the gate
    between = ratio(run_rates(runs_table(b), ["p1-fp32-r0"]), [median])
    assert between.value == pytest.approx(0.8)
    assert f"{between.value:.3f}x" in side_row and gate_check["figures"]["ratio"] == between.value
    # the speed-up inside the current set: its report.html's verdict and the gate's floor check
    runs_b = runs_table(b)
    speedup = ratio(run_rates(runs_b, ["p1-avx-fp32-r0"]), run_rates(runs_b, ["p1-fp32-r0"]))
    assert speedup.value == pytest.approx(avx / median)
    verdict = re.search(r"<b>p1 avx-fp32</b>: <span[^>]*>(.*?)</span>", (b / "report.html").read_text())
    assert f"{speedup.value:.3f}x" in verdict.group(1)
    floor_check = next(c for c in checks if c["kind"] == "speed-up" and c["run"] == "p1 avx-fp32/fp32")
    assert floor_check["figures"]["speedup"] == speedup.value


def test_only_a_run_that_ended_ok_gets_a_speed_up_and_a_loss_gap(runsets):
    """A diverged run's figures cover only the steps before it stopped: no ratio against fp32."""
    runs = runs_table(runsets / "diverged").set_index("run_id")
    assert runs.loc["p1-avx-fp32-r0", "status"] == "diverged"
    assert runs.loc["p1-avx-fp32-r0", "throughput_seq_per_s"] > 0
    assert pd.isna(runs.loc["p1-avx-fp32-r0", "speedup_vs_fp32"])
    assert pd.isna(runs.loc["p1-avx-fp32-r0", "loss_gap_vs_fp32"])
    assert runs.loc["p1-fp32-r0", "speedup_vs_fp32"] == 1.0


def test_a_missing_path_is_named_as_missing(capsys, tmp_path):
    for args in ([tmp_path / "gone"], [tmp_path / "gone", tmp_path]):
        proc = call(capsys, "report", *args)
        assert (proc.returncode, proc.stderr) == (
            2,
            f"harness: {tmp_path / 'gone'}: no such folder or runs.csv\n",
        )
        assert not list(tmp_path.iterdir())


def test_an_output_that_cannot_be_written_is_one_line(capsys, runsets, small_disk):
    disk = small_disk(1)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    proc = call(capsys, "report", runsets / "baseline", runsets / "again", "--output", disk / "x.html")
    assert (proc.returncode, proc.stderr) == (
        2,
        f"harness: {disk}/x.html: cannot be written (Read-only file system)\n",
    )


def test_the_terminal_table_keeps_its_columns_under_a_long_run_name():
    base = {"status": "ok", "throughput_seq_per_s": 0.75, "backend": "fused", "precision": "fp32"}
    rows = [
        {**base, "run_id": "p1-fp32-fused-r0", "reference_run": "p1-fp32-fused-r0"},
        {
            **base,
            "run_id": "p1-avx-fp32-fused-r0",
            "precision": "avx-fp32",
            "reference_run": "p1-fp32-fused-r0",
            "same_computation_as_fp32": True,
        },
    ]
    header, *lines = summary_lines(_runs(*rows))
    # every row's status starts where the header's does
    assert {line.index(" ok ") for line in lines} == {header.index(" status ")}
    assert lines[1].endswith("[same computation as p1-fp32-fused-r0]")
