"""Where a step's time goes: the census's GEMMs read off the verbose traces in tests/traces/, split
with the step clock's parts, and carried through result.json, runs.csv and the report."""

import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from harness import cli
from harness.models.lamb import Lamb
from harness.precision.census import Census
from harness.results.files import read_result, write_result
from harness.results.tables import read_runs
from harness.results.time_split import TimeSplit, speed_of_light

TRACES = Path(__file__).parents[1] / "traces"
_MKL_MS = {"us": 1e-3, "ms": 1.0}


def mkl_seconds(text: str, batched: bool) -> float:
    """MKL's GEMM seconds read straight off the lines, batched calls or the others."""
    total = 0.0
    for fn, t, unit in re.findall(r"^MKL_VERBOSE (\w*GEMM\w*)\([^)]*\) ([\d.]+)(us|ms) ", text, re.M):
        if ("_BATCH" in fn) == batched:
            total += float(t) * _MKL_MS[unit] / 1e3
    return total


def test_an_fp32_step_splits_into_mkls_gemms_and_attentions_batched_ones():
    text = (TRACES / "zen3_avx2_fp32_step.txt").read_text()  # a real recording
    by_unit, attention = Census.from_verbose(text, None).gemm_seconds()
    assert by_unit == {"mkl:generic": pytest.approx(mkl_seconds(text, batched=False))}
    assert attention == pytest.approx(mkl_seconds(text, batched=True)) and attention > 0


def test_a_bf16_step_on_amx_names_onednns_isa_and_finds_attention_by_its_batched_weights():
    text = (TRACES / "spr_amx_bf16_step.txt").read_text()
    by_unit, attention = Census.from_verbose(text, None).gemm_seconds()
    assert set(by_unit) == {"onednn:avx10_1_512_amx", "mkl:avx512"}  # the fp32 remainder in MKL
    batched = re.findall(r",matmul,[^,]*,.*,\d+x\d+x\d+:\d+x\d+x\d+,([\d.]+)$", text, re.M)
    assert len(batched) == 12 and attention == pytest.approx(sum(float(ms) for ms in batched) / 1e3)


def test_the_parts_add_up_to_the_step():
    gemms = ({"mkl:avx512": 0.30, "onednn:avx512_core_bf16": 0.10}, 0.05)
    split = TimeSplit.of_step(gemms, step_s=1.0, data_s=0.02, forward_backward_s=0.70, optimizer_s=0.20)
    assert split.other_compute_s == pytest.approx(0.25) and split.harness_s == pytest.approx(0.08)
    assert sum(split.parts().values()) == pytest.approx(1.0)
    assert list(split.parts())[:2] == ["GEMM mkl:avx512", "GEMM onednn:avx512_core_bf16"]
    assert TimeSplit.from_columns(split.columns()).parts() == pytest.approx(split.parts())
    assert TimeSplit.from_columns({"census_step_s": float("nan")}) is None


def test_runs_csv_and_the_report_carry_each_runs_split(runsets):
    """The checked-in runs predate the split: one is given the split of a recorded step."""
    out = runsets / "report"
    run_dir = out / "runs" / "p1-fp32-r0"
    census = Census.from_verbose((TRACES / "zen3_avx2_fp32_step.txt").read_text(), None)
    split = TimeSplit.of_step(census.gemm_seconds(), 0.9, 0.01, 0.6, 0.2)
    write_result(run_dir, replace(read_result(run_dir), time_split=asdict(split)))
    assert cli.main(["report", str(out)]) == 0
    runs = read_runs(out / "runs.csv").set_index("run_id")
    row = runs.loc["p1-fp32-r0"]
    assert row["census_step_s"] == 0.9 and row["optimizer_s"] == 0.2
    assert row["gemm_s"] == pytest.approx(sum(split.gemm_s.values()))
    assert row["gemm_by_isa"] == f"mkl:generic {split.gemm_s['mkl:generic']:.6f}"
    assert runs["census_step_s"].isna().sum() == len(runs) - 1
    page = (out / "report.html").read_text()
    chart = re.search(r'<svg id="time-split-chart".*?</svg>', page).group(0)
    for part, seconds in split.parts().items():
        assert f"p1-fp32-r0: {part} {seconds:.4g} s" in chart.replace("&#x27;", "'")
    assert "p1-avx-fp32-r0</text>" in chart and "no census step recorded" in chart
    assert 'id="time-split"' in page
    # recorded before harness roofline measured the stream bandwidth: the page says what measures it
    assert 'id="sol-note"' in page and "python -m harness roofline --precisions fp32,avx-fp32" in page


def test_lamb_streams_its_gradients_twice_and_its_weights_and_moments_three_times():
    model = torch.nn.Linear(8, 4)  # 36 fp32 parameters
    optimizer = Lamb(model.parameters())
    # (2 gradient + 3 weight + 3 + 3 moment accesses) x 4 bytes, before the state exists and after
    assert optimizer.streamed_bytes() == 36 * 11 * 4
    model(torch.ones(2, 8)).sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # as between a run's steps: no gradient is held
    assert optimizer.streamed_bytes() == 36 * 11 * 4
    pure = Lamb(torch.nn.Linear(8, 4).to(torch.bfloat16).parameters())  # bf16-pure: 2 bytes each
    assert pure.streamed_bytes() == 36 * 11 * 2


def test_the_speed_of_light_adds_the_gemms_at_the_peak_and_the_optimizer_at_the_bandwidth():
    # 2 TFLOP at 1000 GFLOP/s, 4 GB at 20 GB/s
    assert speed_of_light(2e12, 1000.0, 4e9, 20.0) == pytest.approx(2.0 + 0.2)
