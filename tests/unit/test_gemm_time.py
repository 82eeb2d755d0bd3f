"""One step's GEMM time by kernel and shape, read from the recorded verbose traces in tests/traces/."""

from dataclasses import asdict
from pathlib import Path

import pytest

from harness.bench.gemm_time import groups, summary

TRACES = Path(__file__).parents[1] / "traces"


def test_mkl_gemms_are_grouped_by_shape_with_their_flops():
    # a real bert-tiny fp32 step on a Zen 3: every GEMM in MKL
    gs = groups((TRACES / "zen3_avx2_fp32_step.txt").read_text())
    assert {g.library for g in gs} == {"mkl"}
    assert [g.seconds for g in gs] == sorted((g.seconds for g in gs), reverse=True)
    decoder = next(g for g in gs if g.shape == "128x30522x60")
    assert decoder.kernel == "SGEMM" and decoder.calls == 1
    assert decoder.flops == 2 * 128 * 30522 * 60
    assert decoder.gflops_per_s == pytest.approx(decoder.flops / decoder.seconds / 1e9)
    # the attention's batched calls log pointers, not sizes: timed, but no FLOPs claimed
    batched = next(g for g in gs if g.kernel == "SGEMM_BATCH")
    assert batched.flops is None and batched.gflops_per_s is None and batched.calls > 1


def test_onednn_gemms_are_grouped_and_other_primitives_left_out():
    gs = groups((TRACES / "zen5_avx512_bf16_step.txt").read_text())
    # bf16's GEMMs in oneDNN; the pooler's fp32 remainder in MKL
    assert {g.kernel for g in gs if g.library == "mkl"} == {"SGEMM"}
    assert {g.library for g in gs[:5]} == {"onednn"}
    # reorders and eltwise ran in the same step: they are not GEMMs
    assert all(g.kernel.startswith(("brg_matmul:", "brgemm:")) for g in gs if g.library == "onednn")
    scores = next(g for g in gs if g.shape == "8x128x128:8x128x64")
    assert scores.flops == scores.calls * 2 * 8 * 128 * 128 * 64


def test_summary_splits_the_step_into_its_gemms_and_the_rest():
    text = (TRACES / "zen3_avx2_fp32_step.txt").read_text()
    gs = groups(text)
    total = sum(g.seconds for g in gs)
    unsized = sum(g.seconds for g in gs if g.flops is None)
    lines = summary("fp32 harness", {"step_s": 2.0, "groups": [asdict(g) for g in gs]}, 50.0, 3)
    assert len(lines) == 4
    head = lines[0]
    assert head.startswith(f"GEMMs of one fp32 harness step, verbose on: {total:.2f} s")
    assert "of the roofline's 50.0" in head
    assert f"{unsized:.2f} s of it in calls the log gives no sizes for" in head
    assert head.endswith(f"the step took 2.00 s, {2.0 - total:.2f} s of it outside its GEMMs")
    assert "128x30522x60" in lines[1]
