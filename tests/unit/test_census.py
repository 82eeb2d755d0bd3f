"""The kernel census of a step and the ceiling check, read from the verbose traces in tests/traces/
(zen3_avx2_fp32_step.txt is a real recording; the others are written by hand in the same libraries'
formats, as their headers say) and judged against fixed machines' admissions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from platforms import SAPPHIRE_RAPIDS, ZEN3, ZEN5
from verbose_headers import ISA_AVX512_BF16, ISA_SPR, MKL_AMD, MKL_AMX, MKL_AVX2_ISA

from harness.precision import mkl_verbose, onednn_verbose
from harness.precision.census import GEMM_SHARE_FLOOR, Census, ceiling_problem, census_problem
from harness.precision.modes import BUILTIN, PrecisionMode, admit

TRACES = Path(__file__).parent.parent / "traces"
MODES: dict[str, PrecisionMode] = {m.name: m for m in BUILTIN}


def trace(name: str) -> str:
    return (TRACES / name).read_text()


_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
_ONEDNN_GEMM = re.compile(
    r"^onednn_verbose,v1,primitive,exec,cpu,(?:matmul|inner_product),"
    r"[^,]*:(\w+),.*,([\d.]+)$"
)
_MKL_GEMM = re.compile(r"^MKL_VERBOSE (\w*GEMM\w*)\([^)]*\) ([\d.]+)(ns|us|ms|s) ")


def gemm_times(text: str) -> dict[str, float]:
    """GEMM milliseconds read straight off the lines, independently of the harness's parsers: oneDNN's
    by the implementation's ISA suffix, MKL's all under "mkl"."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if (m := _ONEDNN_GEMM.match(line)) is not None:
            key, ms = m[1], float(m[2])
        elif (m := _MKL_GEMM.match(line)) is not None:
            key, ms = "mkl", float(m[2]) * _UNIT_MS[m[3]]
        else:
            continue
        out[key] = out.get(key, 0.0) + ms
    return out


# -------------------------------------------------------------------------------- census on the traces


def test_census_of_the_real_zen3_fp32_step():
    text = trace("zen3_avx2_fp32_step.txt")
    census = Census.from_verbose(text, None)
    assert census.mkl_isa == "Intel(R) Architecture processors"
    assert census.gemm_isa_share() == {"mkl:generic": 1.0}
    summary = census.summary()
    assert summary["gemm_isa"] == "mkl:generic" and summary["amx_used"] is False
    assert summary["amx_gemm_share"] == 0
    entries = {e.primitive: e for e in census.entries}
    shapes = re.findall(r"^MKL_VERBOSE SGEMM\([NT],[NT],(\d+),(\d+),(\d+),", text, re.M)
    assert len(shapes) > 20
    sgemm = entries["SGEMM"]
    assert sgemm.calls == len(shapes) and sgemm.gemm and sgemm.dtype == "f32" and sgemm.isa == "mkl:generic"
    assert sgemm.gflop == pytest.approx(sum(2 * int(m) * int(n) * int(k) for m, n, k in shapes) / 1e9)
    assert entries["SGEMM_BATCH"].gemm and entries["SGEMM_BATCH"].gflop is None  # sizes by pointer
    assert not entries["SDOT"].gemm
    assert census.gemm_time_ms == pytest.approx(gemm_times(text)["mkl"])
    eltwise = entries["eltwise"]
    assert (eltwise.library, eltwise.isa, eltwise.dtype, eltwise.gemm) == ("onednn", "avx2", "f32", False)
    # an fp32 mode holds its GEMMs to nothing, and nothing ran on AMX
    for mode in ("fp32", "avx-fp32"):
        assert census_problem(MODES[mode], admit(MODES[mode], ZEN3).gemm_isa, census) is None


def test_the_mkl_header_of_the_ceiling_probe_labels_a_step_that_printed_none():
    text = "\n".join(
        line
        for line in trace("zen3_avx2_fp32_step.txt").splitlines()
        if not line.startswith("MKL_VERBOSE oneMKL")
    )
    assert Census.from_verbose(text, MKL_AVX2_ISA).gemm_isa_share() == {"mkl:avx2": 1.0}
    # the step's own header, where it printed one, wins
    own = Census.from_verbose(MKL_AMD + "\n" + text, MKL_AVX2_ISA)
    assert own.gemm_isa_share() == {"mkl:generic": 1.0}


def test_census_of_an_amx_bf16_step():
    text = trace("spr_amx_bf16_step.txt")
    census = Census.from_verbose(text, None)
    times = gemm_times(text)
    assert set(times) == {"avx10_1_512_amx", "mkl"}
    assert times["mkl"] / sum(times.values()) < 0.1  # the fp32 remainder in MKL
    assert census.share_on("amx", "bf16") >= GEMM_SHARE_FLOOR
    assert census.share_on("amx", "bf16") == pytest.approx(times["avx10_1_512_amx"] / sum(times.values()))
    assert census.gemm_isa_share()["avx10_1_512_amx"] >= 0.9
    assert census.summary()["gemm_isa"] == "avx10_1_512_amx"
    assert census.summary()["amx_used"] is True
    assert census.summary()["amx_gemm_share"] == pytest.approx(census.gemm_isa_share()["avx10_1_512_amx"])
    kernels = {(e.primitive, e.kernel, e.dtype) for e in census.entries if e.gemm and e.library == "onednn"}
    assert kernels == {
        ("matmul", "brg_matmul:avx10_1_512_amx", "bf16"),
        ("inner_product", "brgemm:avx10_1_512_amx", "bf16"),
    }
    promised = admit(MODES["bf16"], SAPPHIRE_RAPIDS).gemm_isa
    assert promised == "amx"
    assert census_problem(MODES["bf16"], promised, census) is None
    # the same step under avx-bf16 broke its cap
    problem = census_problem(MODES["avx-bf16"], admit(MODES["avx-bf16"], SAPPHIRE_RAPIDS).gemm_isa, census)
    assert problem is not None and problem.startswith("avx-bf16 must stay off AMX but the step ran ")
    assert "matmul/brg_matmul:avx10_1_512_amx" in problem
    assert "inner_product/brgemm:avx10_1_512_amx" in problem


def test_an_fp32_step_on_an_amx_host_used_no_amx_though_its_gelu_names_the_amx_level():
    """Issue 37: fp32's GELU eltwise runs `jit:avx10_1_512_amx` on f32 data, its GEMMs all in MKL's
    AVX-512 SGEMM: the JIT level is no AMX tile, and fp32 must not read as run on AMX."""
    text = trace("spr_amx_fp32_step.txt")
    eltwise = [line for line in text.splitlines() if ",eltwise,jit:avx10_1_512_amx," in line]
    assert eltwise and all("data:f32:" in line for line in eltwise)
    census = Census.from_verbose(text, None)
    summary = census.summary()
    assert census.gemm_isa_share() == {"mkl:avx512": 1.0}
    assert summary["amx_used"] is False and summary["amx_gemm_share"] == 0
    assert not any(e["amx_tiles"] for e in summary["kernel_census"])
    assert not onednn_verbose.parse(text).amx_used
    # the level is still what an avx-* cap forbids: had avx-fp32 run this, its cap did not hold
    assert census.amx_kernels == ["eltwise/jit:avx10_1_512_amx"]
    assert census_problem(MODES["fp32"], admit(MODES["fp32"], SAPPHIRE_RAPIDS).gemm_isa, census) is None


def test_census_of_an_avx512_bf16_step_against_either_promise():
    text = trace("zen5_avx512_bf16_step.txt")
    census = Census.from_verbose(text, None)
    times = gemm_times(text)
    bf16_share = times["avx512_core_bf16"] / sum(times.values())
    assert bf16_share >= GEMM_SHARE_FLOOR
    assert census.share_on("avx512_core_bf16", "bf16") == pytest.approx(bf16_share)
    assert census.amx_kernels == []
    promised = admit(MODES["bf16"], ZEN5).gemm_isa
    assert promised == "avx512_core_bf16"
    assert census_problem(MODES["bf16"], promised, census) is None
    # avx-bf16 on a Sapphire Rapids is held to the same unit, and this step would satisfy it
    capped = admit(MODES["avx-bf16"], SAPPHIRE_RAPIDS).gemm_isa
    assert capped == "avx512_core_bf16" and census_problem(MODES["avx-bf16"], capped, census) is None
    # an fp32 run that ran this step computed in bf16: invalid, whatever its ISA promise
    for mode in ("fp32", "avx-fp32"):
        problem = census_problem(MODES[mode], admit(MODES[mode], ZEN5).gemm_isa, census)
        assert problem is not None and problem.startswith(
            f"{mode} computes in fp32 but the step ran bf16 kernels: "
        )
        assert "matmul/brg_matmul:avx512_core_bf16" in problem
    # judged against AMX's promise it is invalid, and the message says how much ran where
    problem = census_problem(MODES["bf16"], "amx", census)
    assert problem is not None
    assert problem.startswith(
        "bf16 must run its GEMMs on amx here, but 0% of the step's GEMM time did "
        f"(under {GEMM_SHARE_FLOOR:.0%}; seen: "
    )
    assert f"avx512_core_bf16 {bf16_share:.0%}" in problem
    assert f"mkl:generic {1 - bf16_share:.0%}" in problem


def test_a_bf16_step_whose_gemms_all_ran_in_mkl_sgemm_is_invalid():
    """Autocast that did not take: every GEMM in MKL's fp32 SGEMM, none on the bf16 unit."""
    census = Census.from_verbose(trace("zen5_avx512_fp32_step.txt"), None)
    assert census.gemm_isa_share() == {"mkl:generic": 1.0}
    problem = census_problem(MODES["bf16"], admit(MODES["bf16"], ZEN5).gemm_isa, census)
    assert problem == (
        "bf16 must run its GEMMs on avx512_core_bf16 here, but 0% of the step's GEMM time did "
        "(under 90%; seen: mkl:generic 100%)"
    )
    # as the fp32 step it is, it is valid
    assert census_problem(MODES["fp32"], admit(MODES["fp32"], ZEN5).gemm_isa, census) is None
    assert census_problem(MODES["avx-fp32"], admit(MODES["avx-fp32"], ZEN5).gemm_isa, census) is None


def test_an_fp32_step_on_avx512_runs_its_gemms_in_mkl_and_the_rest_in_onednn():
    text = trace("zen5_avx512_fp32_step.txt")
    census = Census.from_verbose(text, None)
    onednn = {(e.primitive, e.isa) for e in census.entries if e.library == "onednn"}
    assert onednn == {("eltwise", "avx512_core"), ("reorder", "uni")}
    assert all(e.library == "mkl" and e.dtype == "f32" for e in census.entries if e.gemm)
    assert census.gemm_time_ms == pytest.approx(gemm_times(text)["mkl"])


def test_an_avx_fp32_step_that_ran_an_amx_kernel_is_invalid():
    text = trace("spr_avx_fp32_amx_leak_step.txt")
    amx_lines = [line for line in text.splitlines() if line.startswith("onednn_verbose") and "_amx," in line]
    assert len(amx_lines) == 1
    census = Census.from_verbose(text, None)
    assert census.mkl_isa is not None and mkl_verbose.isa_label(census.mkl_isa) == "avx512"  # MKL's cap held
    assert census.amx_kernels == ["matmul/brg_matmul:avx10_1_512_amx"]
    # f32 data with bf16 math (attr-fpmath:bf16) at the AMX level: the tiles computed it
    assert census.summary()["amx_used"] is True
    times = gemm_times(text)
    assert census.gemm_isa_share()["avx10_1_512_amx"] == pytest.approx(
        times["avx10_1_512_amx"] / sum(times.values())
    )
    mode = MODES["avx-fp32"]
    assert (
        census_problem(mode, admit(mode, SAPPHIRE_RAPIDS).gemm_isa, census)
        == "avx-fp32 must stay off AMX but the step ran matmul/brg_matmul:avx10_1_512_amx"
    )
    # fp32 may use AMX: the same step is valid for it
    assert census_problem(MODES["fp32"], admit(MODES["fp32"], SAPPHIRE_RAPIDS).gemm_isa, census) is None
    # and the ceiling oneDNN printed already said so
    header = onednn_verbose.parse(text).isa
    assert header == ISA_SPR and ceiling_problem(mode, header) is not None


def test_an_emulated_run_without_a_gemm_in_its_census_is_valid():
    text = "\n".join(line for line in trace("zen3_avx2_fp32_step.txt").splitlines() if "eltwise" in line)
    census = Census.from_verbose(text, None)
    assert census.entries and not any(e.gemm for e in census.entries)
    admission = admit(MODES["bf16"], ZEN3)
    assert admission.status == "emulated" and admission.gemm_isa is None
    assert census_problem(MODES["bf16"], admission.gemm_isa, census) is None
    # with a promise, a census without a GEMM proves nothing: invalid
    problem = census_problem(MODES["bf16"], "avx512_core_bf16", census)
    assert problem is not None and problem.endswith("(under 90%; seen: no GEMM at all)")


def test_a_bf32_step_whose_gemms_all_ran_in_mkl_sgemm_is_invalid():
    """bf32 means fp32 GEMMs computed on AMX through oneDNN (fp32_precision=bf16). Where that did not take,
    the fp32 GEMMs run in MKL's SGEMM, which computes in fp32 on AVX-512 FMA (MKL uses AMX for SGEMM only
    under MKL_BLAS_COMPUTE_MODE, which no mode sets), even though MKL's header on the machine names AMX.
    Such a step computed plain fp32: none of its GEMM time ran on AMX."""
    sgemms = [
        line
        for line in trace("zen3_avx2_fp32_step.txt").splitlines()
        if line.startswith("MKL_VERBOSE SGEMM(")
    ]
    census = Census.from_verbose("\n".join([MKL_AMX, *sgemms]), None)
    assert all(e.dtype == "f32" and e.library == "mkl" for e in census.entries)
    promised = admit(MODES["bf32"], SAPPHIRE_RAPIDS).gemm_isa
    assert promised == "amx"
    problem = census_problem(MODES["bf32"], promised, census)
    assert problem is not None and "but 0% of the step's GEMM time did" in problem


# ---------------------------------------------------------------------------------------------- ceiling


def test_ceiling_problem():
    assert ceiling_problem(MODES["fp32"], None) == "oneDNN reported no ISA: the cap cannot be verified"
    assert ceiling_problem(MODES["avx-fp32"], None) is not None
    assert (
        ceiling_problem(MODES["avx-fp32"], ISA_SPR)
        == f"avx-fp32 must stay off AMX but oneDNN allows itself {ISA_SPR!r}"
    )
    assert ceiling_problem(MODES["avx-bf16"], ISA_SPR) is not None
    assert ceiling_problem(MODES["fp32"], ISA_SPR) is None
    assert ceiling_problem(MODES["bf16"], ISA_SPR) is None
    # capped to AVX512_BF16, as avx-fp32 asks
    assert ceiling_problem(MODES["avx-fp32"], ISA_AVX512_BF16) is None
