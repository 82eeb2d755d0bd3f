"""Admission, same-computation, fingerprints and the kernel census, judged on fixed machines and traces.

Host-independent: the machines are the Platform values of tests/platforms.py (never detect()), and the
censuses are read from the verbose traces in tests/traces/ (zen3_avx2_fp32_step.txt is a real
recording; the others are written by hand in the same libraries' formats, as their headers say).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
from platforms import SAPPHIRE_RAPIDS, SAPPHIRE_RAPIDS_AMX_HIDDEN, SKYLAKE_X, ZEN3, ZEN5

from harness.machine.platform import Platform, as_dict, fingerprint_key
from harness.precision import mkl_verbose, onednn_verbose
from harness.precision.census import GEMM_SHARE_FLOOR, Census, ceiling_problem, census_problem
from harness.precision.modes import BUILTIN, PrecisionMode, admit, same_computation

TRACES = Path(__file__).parent.parent / "traces"
MODES: dict[str, PrecisionMode] = {m.name: m for m in BUILTIN}

ISA_SPR = (
    "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and "
    "8-bit integer support"
)
ISA_AVX512_BF16 = "Intel AVX-512 with Intel DL Boost and bfloat16 support"
MKL_PREFIX = "MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture "
MKL_AMD = MKL_PREFIX + "Intel(R) Architecture processors, Lnx 2.45GHz lp64 gnu_thread"
MKL_AVX2_ISA = "Intel(R) Advanced Vector Extensions 2 (Intel(R) AVX2) enabled processors"
MKL_AVX2 = MKL_PREFIX + MKL_AVX2_ISA + ", Lnx 2.45GHz lp64 gnu_thread"
MKL_AVX512_ISA = "Intel(R) Advanced Vector Extensions 512 (Intel(R) AVX-512) enabled processors"
MKL_AMX_ISA = (
    "Intel(R) Advanced Vector Extensions 512 (Intel(R) AVX-512) with support for INT8, BF16, FP16 "
    "(limited) instructions, and Intel(R) Advanced Matrix Extensions (Intel(R) AMX) with INT8 "
    "and BF16"
)
MKL_AMX = MKL_PREFIX + MKL_AMX_ISA + ", Lnx 2.00GHz lp64 gnu_thread"
MKL_TAIL = " CNR:OFF Dyn:1 FastMM:1 TID:0  NThr:2"


def trace(name: str) -> str:
    return (TRACES / name).read_text()


def onednn_exec(*fields: str) -> str:
    """A oneDNN 3.12 exec line from the fields after `exec,cpu` (kept short here to fit the line length)."""
    return ",".join(("onednn_verbose", "v1", "primitive", "exec", "cpu", *fields))


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


# ---------------------------------------------------------------------------------------------- admission

NEEDS_AMX = (
    "needs amx (AMX-BF16 usable by this process (CPUID, OS tile state, XTILEDATA permission)), "
    "and without it would compute something else"
)
NEEDS_BF16 = "needs bf16 (native bf16 GEMMs: usable AMX-BF16 or AVX512_BF16), which this machine lacks"
NEEDS_AVX512_BF16 = "needs avx512_bf16 (AVX512_BF16 instructions), which this machine lacks"

NATIVE = ("native", (), None, None)
BELOW_AMX_WITH_BF16 = {
    "fp32": NATIVE,
    "avx-fp32": NATIVE,
    "bf16": ("native", (), "avx512_core_bf16", None),
    "bf32": ("refused", ("amx",), None, NEEDS_AMX),
    "avx-bf16": ("native", (), "avx512_core_bf16", None),
    "bf16-pure": ("native", (), "avx512_core_bf16", None),
}
WITHOUT_BF16 = {
    "fp32": NATIVE,
    "avx-fp32": NATIVE,
    "bf16": ("emulated", ("bf16",), None, NEEDS_BF16),
    "bf32": ("refused", ("amx",), None, NEEDS_AMX),
    "avx-bf16": ("emulated", ("avx512_bf16",), None, NEEDS_AVX512_BF16),
    "bf16-pure": ("emulated", ("bf16",), None, NEEDS_BF16),
}
ADMISSIONS: list[tuple[str, Platform, str, dict[str, tuple]]] = [
    (
        "SAPPHIRE_RAPIDS",
        SAPPHIRE_RAPIDS,
        "avx512_core",
        {
            "fp32": NATIVE,
            "avx-fp32": NATIVE,
            "bf16": ("native", (), "amx", None),
            "bf32": ("native", (), "amx", None),
            # capped below AMX, its bf16 unit is AVX512_BF16's even where AMX is usable
            "avx-bf16": ("native", (), "avx512_core_bf16", None),
            "bf16-pure": ("native", (), "amx", None),
        },
    ),
    ("SAPPHIRE_RAPIDS_AMX_HIDDEN", SAPPHIRE_RAPIDS_AMX_HIDDEN, "avx512_core", BELOW_AMX_WITH_BF16),
    ("ZEN5", ZEN5, "avx512_core", BELOW_AMX_WITH_BF16),
    ("SKYLAKE_X", SKYLAKE_X, "avx512_core", WITHOUT_BF16),
    ("ZEN3", ZEN3, "avx2", WITHOUT_BF16),
]


@pytest.mark.parametrize(
    ("machine", "platform", "vector_isa", "expected"), ADMISSIONS, ids=[a[0] for a in ADMISSIONS]
)
def test_admission_of_every_builtin_mode(machine, platform, vector_isa, expected):
    assert set(expected) == set(MODES)
    for name, (status, missing, gemm_isa, reason) in expected.items():
        a = admit(MODES[name], platform)
        got = (a.mode, a.status, a.missing, a.gemm_isa, a.reason)
        assert got == (name, status, missing, gemm_isa, reason), f"{name} on {machine}"
        assert a.vector_isa == vector_isa, f"{name} on {machine}"
        assert a.emulated == (status == "emulated")


def test_the_fixtures_are_the_machines_they_claim_to_be():
    """What admission reads of them, checked against their flags (a fixture at odds with itself would
    make the admission table prove nothing)."""
    for p in (SAPPHIRE_RAPIDS, SAPPHIRE_RAPIDS_AMX_HIDDEN, ZEN5, SKYLAKE_X, ZEN3):
        flags = set(p.flags)
        assert p.avx512 == ("avx512f" in flags)
        assert p.avx512_bf16 == ("avx512_bf16" in flags) and p.avx512_fp16 == ("avx512_fp16" in flags)
        assert p.amx_bf16 == ("amx_bf16" in flags)
        assert p.amx_usable == (p.amx_bf16 and p.amx_os_enabled and p.amx_permission)
        assert p.amx_os_enabled == bool(int(p.xcr0, 16) >> 17 & 1 and int(p.xcr0, 16) >> 18 & 1)
        assert p.versions == {"torch": "2.13.0+cpu", "onednn": "3.12.0", "mkl": "2024.2"}
        assert p.physical_cores == 2
    assert {
        "avx512f",
        "avx512_bf16",
        "avx512_fp16",
        "amx_bf16",
        "amx_tile",
        "amx_int8",
        "avx2",
        "avx",
        "sse4_1",
    } <= set(SAPPHIRE_RAPIDS.flags)
    assert SAPPHIRE_RAPIDS.bf16_isa == "amx"
    assert SAPPHIRE_RAPIDS_AMX_HIDDEN.bf16_isa == ZEN5.bf16_isa == "avx512_core_bf16"
    assert SKYLAKE_X.bf16_isa is None and ZEN3.bf16_isa is None
    assert (ZEN3.vendor, ZEN3.family, ZEN3.model, ZEN5.vendor, ZEN5.family) == (
        "AuthenticAMD",
        25,
        1,
        "AuthenticAMD",
        26,
    )
    assert (SAPPHIRE_RAPIDS.family, SAPPHIRE_RAPIDS.model, SKYLAKE_X.model) == (6, 143, 85)


# -------------------------------------------------------------------------------------- same computation


@pytest.mark.parametrize(
    ("platform", "same"),
    [
        (ZEN5, True),
        (SKYLAKE_X, True),
        (ZEN3, True),
        (SAPPHIRE_RAPIDS, False),
        # no AMX, but AVX512_FP16: it lies between the two caps (AVX512_CORE_AMX and AVX512_CORE_BF16)
        (SAPPHIRE_RAPIDS_AMX_HIDDEN, False),
    ],
    ids=["ZEN5", "SKYLAKE_X", "ZEN3", "SAPPHIRE_RAPIDS", "SAPPHIRE_RAPIDS_AMX_HIDDEN"],
)
def test_fp32_and_avx_fp32_are_the_same_computation_where_the_caps_remove_nothing(platform, same):
    assert same_computation(MODES["fp32"], MODES["avx-fp32"], platform) is same
    assert same_computation(MODES["avx-fp32"], MODES["fp32"], platform) is same
    # the same holds of the two bf16 modes, which differ by the same caps
    assert same_computation(MODES["bf16"], MODES["avx-bf16"], platform) is same


@pytest.mark.parametrize(
    "platform",
    [SAPPHIRE_RAPIDS, SAPPHIRE_RAPIDS_AMX_HIDDEN, ZEN5, SKYLAKE_X, ZEN3],
    ids=["SAPPHIRE_RAPIDS", "SAPPHIRE_RAPIDS_AMX_HIDDEN", "ZEN5", "SKYLAKE_X", "ZEN3"],
)
def test_fp32_and_bf16_are_never_the_same_computation(platform):
    for a, b in (("fp32", "bf16"), ("avx-fp32", "avx-bf16"), ("fp32", "bf32"), ("avx-fp32", "bf16")):
        assert not same_computation(MODES[a], MODES[b], platform), (a, b)
    assert same_computation(MODES["fp32"], MODES["fp32"], platform)


# ------------------------------------------------------------------------------------------- fingerprint


def test_fingerprint_tells_zen3_from_zen5_though_their_model_strings_match():
    assert ZEN3.cpu_model == ZEN5.cpu_model == "AMD EPYC"
    assert fingerprint_key(as_dict(ZEN3)) != fingerprint_key(as_dict(ZEN5))
    # the flags alone tell them apart, with family, model and stepping made equal
    alike = dataclasses.replace(ZEN5, family=ZEN3.family, model=ZEN3.model, stepping=ZEN3.stepping)
    assert fingerprint_key(as_dict(alike)) != fingerprint_key(as_dict(ZEN3))
    assert ZEN3.fingerprint()["flags_digest"] != ZEN5.fingerprint()["flags_digest"]


def test_fingerprint_is_equal_for_equal_platforms():
    twin = dataclasses.replace(ZEN3, flags=list(ZEN3.flags), versions=dict(ZEN3.versions))
    assert twin is not ZEN3 and twin == ZEN3
    assert fingerprint_key(as_dict(twin)) == fingerprint_key(as_dict(ZEN3))
    # the order of the flags, the memory and the logical CPUs do not decide comparability...
    shuffled = dataclasses.replace(ZEN3, flags=list(reversed(ZEN3.flags)), memory_gib=503.5, logical_cpus=4)
    assert fingerprint_key(as_dict(shuffled)) == fingerprint_key(as_dict(ZEN3))
    # ...the cores, AMX's usability and the library builds do
    for changed in (
        dataclasses.replace(ZEN3, physical_cores=4),
        dataclasses.replace(SAPPHIRE_RAPIDS, amx_usable=False),
        dataclasses.replace(ZEN3, versions={**ZEN3.versions, "onednn": "3.11.0"}),
    ):
        base = SAPPHIRE_RAPIDS if changed.vendor == "GenuineIntel" else ZEN3
        assert fingerprint_key(as_dict(changed)) != fingerprint_key(as_dict(base))


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


# ------------------------------------------------------------------------------------------ mkl_verbose


@pytest.mark.parametrize(
    ("line", "isa", "label"),
    [
        (MKL_AMD, "Intel(R) Architecture processors", "generic"),
        (MKL_AVX2, MKL_AVX2_ISA, "avx2"),
        (MKL_AMX, MKL_AMX_ISA, "avx512_amx"),
        (MKL_PREFIX + MKL_AVX512_ISA + ", Lnx 2.00GHz lp64 gnu_thread", MKL_AVX512_ISA, "avx512"),
    ],
    ids=["amd", "avx2", "amx", "avx512"],
)
def test_mkl_header_and_isa_label(line, isa, label):
    header, calls = mkl_verbose.parse(line + "\n")
    assert header == isa and calls == []
    assert mkl_verbose.isa_label(header) == label


def test_mkl_labels_a_float_call_by_its_vector_isa_alone():
    # AMX, BF16 and VNNI have no fp32 arithmetic: an SGEMM under the AMX header ran on AVX-512
    assert mkl_verbose.isa_label(MKL_AMX_ISA, "f32") == "avx512"
    assert mkl_verbose.isa_label(MKL_AMX_ISA, "bf16") == "avx512_amx"
    assert mkl_verbose.isa_label(MKL_AVX2_ISA, "f32") == "avx2"


def test_mkl_isa_label_without_a_header():
    assert mkl_verbose.isa_label(None) == "generic"
    assert mkl_verbose.parse("no verbose output\n") == (None, [])


def test_mkl_times_are_converted_to_milliseconds():
    text = "\n".join(
        f"MKL_VERBOSE SDOT(128,0x55d3c1a04000,1,0x55d3c1a04000,1) {t}{MKL_TAIL}"
        for t in ("250ns", "1.5us", "2.25ms", "1.5s")
    )
    _, calls = mkl_verbose.parse(text)
    assert [c.time_ms for c in calls] == pytest.approx([250e-6, 1.5e-3, 2.25, 1500.0])


def test_mkl_calls_gemm_or_not_and_their_flops():
    pointers = ",".join(f"0x7ffcff4557{i:02x}" for i in range(13))
    batch = f"MKL_VERBOSE SGEMM_BATCH(N,N,{pointers}) 442.74us{MKL_TAIL}"
    sgemm = (
        "MKL_VERBOSE SGEMM(T,N,384,512,128,0x7ffcff454e80,0x564dfe104f80,128,0x564dffe55280,128,"
        "0x7ffcff454ea0,0x564dffe95300,384) 1.20ms" + MKL_TAIL
    )
    sdot = "MKL_VERBOSE SDOT(3906816,0x564e02dec440,1,0x564e02dec440,1) 1.06ms" + MKL_TAIL
    _, (b, g, d) = mkl_verbose.parse("\n".join([batch, sgemm, sdot]))
    assert (b.function, b.is_gemm, b.dtype, b.flops) == ("SGEMM_BATCH", True, "f32", None)
    assert b.time_ms == pytest.approx(0.44274)
    assert (g.function, g.is_gemm, g.flops, g.time_ms) == ("SGEMM", True, 2.0 * 384 * 512 * 128, 1.2)
    assert (d.function, d.is_gemm, d.dtype, d.flops) == ("SDOT", False, "f32", None)


# ---------------------------------------------------------------------------------------- onednn_verbose


def one_execution(line: str) -> onednn_verbose.Execution:
    (execution,) = onednn_verbose.parse(line + "\n").executions
    return execution


BF16_MM = "src:bf16::blocked:abc::f0 wei:bf16::blocked:abc::f0 dst:bf16::blocked:abc::f0"


@pytest.mark.parametrize(
    ("line", "flops"),
    [
        (
            onednn_exec(
                "matmul",
                "brg_matmul:avx10_1_512_amx",
                "undef",
                "src:bf16::blocked:ab::f0 wei:bf16:a:blocked:ab::f0 dst:bf16::blocked:ab::f0",
                "attr-scratchpad:user",
                "",
                "8x1024:1024x4096",
                "0.3",
            ),
            2 * 8 * 1024 * 4096,
        ),
        (
            onednn_exec(
                "matmul",
                "brg_matmul:avx512_core_bf16",
                "undef",
                BF16_MM,
                "attr-scratchpad:user",
                "",
                "12x128x64:12x64x128",
                "0.05",
            ),
            2 * 12 * 128 * 64 * 128,
        ),
        (
            onednn_exec(
                "inner_product",
                "brgemm:avx10_1_512_amx",
                "forward_training",
                "src:bf16::blocked:ab::f0 wei:bf16:a:blocked:AB16b64a2b::f0 dst:bf16::blocked:ab::f0",
                "attr-scratchpad:user",
                "",
                "mb8ic1024oc4096",
                "0.1",
            ),
            2 * 8 * 1024 * 4096,
        ),
        (
            "dnnl_verbose,exec,cpu,inner_product,brgemm:avx512_core,forward_training,src_f32::blocked:ab:f0 "
            "wei_f32::blocked:AB16b64a:f0 dst_f32::blocked:ab:f0,,,mb8ic1024oc4096,0.86084",
            2 * 8 * 1024 * 4096,
        ),
        (
            onednn_exec(
                "reorder",
                "jit:uni",
                "undef",
                "src:f32::blocked:ab::f0 dst:bf16::blocked:ab::f0",
                "",
                "",
                "4096x1024",
                "0.2",
            ),
            None,
        ),
    ],
    ids=["matmul", "batched-matmul", "inner-product", "inner-product-2.x", "reorder"],
)
def test_onednn_execution_flops(line, flops):
    e = one_execution(line)
    assert e.flops == flops
    assert e.is_gemm == (flops is not None)
    assert isinstance(e.time_ms, float) and e.time_ms > 0
    assert math.isclose(e.time_ms, float(line.rsplit(",", 1)[1]))


@pytest.mark.parametrize(
    ("line", "dtype"),
    [
        # 3.4+: `name:dtype:...`, the weights' data type
        (
            onednn_exec(
                "inner_product",
                "brgemm:avx10_1_512_amx",
                "forward_training",
                "src:bf16::blocked:ab::f0 wei:bf16:a:blocked:AB16b64a2b::f0 bia:f32::blocked:a::f0 "
                "dst:f32::blocked:ab::f0",
                "",
                "",
                "mb8ic1024oc4096",
                "0.1",
            ),
            "bf16",
        ),
        # the inputs', not the output's: a bf16 GEMM that writes f32 weight gradients computes in bf16
        (
            onednn_exec(
                "inner_product",
                "brgemm:avx512_core_bf16",
                "backward_weights",
                "src:bf16::blocked:ab::f0 diff_wei:f32::blocked:ab::f0 diff_bia:f32::blocked:a::f0 "
                "diff_dst:bf16::blocked:ab::f0",
                "",
                "",
                "mb8ic1024oc4096",
                "0.2",
            ),
            "bf16",
        ),
        (
            onednn_exec(
                "matmul",
                "brg_matmul:avx512_core",
                "undef",
                "src:f32::blocked:ab::f0 wei:s8:a:blocked:ab::f0 dst:f32::blocked:ab::f0",
                "",
                "",
                "8x1024:1024x4096",
                "0.2",
            ),
            "s8",
        ),
        # 2.x-3.3: `name_dtype::...`
        (
            "dnnl_verbose,exec,cpu,inner_product,brgemm:avx512_core_bf16,backward_weights,"
            "src_bf16::blocked:ab:f0 diff_wei_f32::blocked:ab:f0 diff_bia_f32::blocked:a:f0 "
            "diff_dst_bf16::blocked:ab:f0,,,mb8ic1024oc4096,0.5",
            "bf16",
        ),
        (
            "onednn_verbose,exec,cpu,matmul,brg:avx512_core_amx,undef,"
            "src_bf16::blocked:ab:f0 wei_bf16::blocked:ab:f0 dst_f32::blocked:ab:f0,,,8x1024:1024x4096,0.3",
            "bf16",
        ),
        # no weights: the first memory's
        (
            onednn_exec(
                "reorder",
                "jit:uni",
                "undef",
                "src:f32::blocked:ab::f0 dst:bf16::blocked:ab::f0",
                "",
                "",
                "4096x1024",
                "0.2",
            ),
            "f32",
        ),
        (
            "dnnl_verbose,exec,cpu,eltwise,jit:avx512_core,forward_training,data_bf16::blocked:abc:f0 "
            "diff_undef::undef::f0,,alg:eltwise_gelu_erf alpha:0 beta:0,4x128x512,0.01",
            "bf16",
        ),
    ],
    ids=["3.x-wei", "3.x-diff-wei", "3.x-s8-wei", "2.x-diff-wei", "3.0-wei", "3.x-first", "2.x-first"],
)
def test_onednn_execution_dtype(line, dtype):
    assert one_execution(line).dtype == dtype


def test_onednn_execution_isa_and_attributes():
    mds = "src:f32::blocked:abc::f0 wei:f32::blocked:acb::f0 dst:f32::blocked:abc::f0"
    attrs = "attr-fpmath:bf16 attr-scratchpad:user"
    e = one_execution(
        onednn_exec(
            "matmul", "brg_matmul:avx10_1_512_amx", "undef", mds, attrs, "", "8x128x128:8x128x64", "0.0213"
        )
    )
    assert (e.primitive, e.isa, e.dtype, e.attributes, e.problem) == (
        "matmul",
        "avx10_1_512_amx",
        "f32",
        "attr-fpmath:bf16 attr-scratchpad:user",
        "8x128x128:8x128x64",
    )
    assert e.flops == 2 * 8 * 128 * 128 * 64


@pytest.mark.parametrize(
    ("header", "isa"),
    [
        ("Intel AVX2", "avx2"),
        ("Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions", "avx512_core"),  # oneDNN 2.x
        ("Intel AVX-512 with Intel DL Boost", "avx512_core_vnni"),
        (ISA_AVX512_BF16, "avx512_core_bf16"),
        # AMX kernels name themselves: the header's vector part is what a jit kernel without a name runs
        (ISA_SPR, "avx512_core_fp16"),
        (
            "Intel AVX-512 with Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit "
            "integer support",
            "avx512_core_bf16",
        ),
        (None, None),
    ],
)
def test_onednn_vector_isa_of_a_header(header, isa):
    assert onednn_verbose.vector_isa(header) == isa


def test_a_jit_gemm_that_names_no_isa_runs_at_the_ceilings_vector_isa():
    line = onednn_exec(
        "matmul",
        "gemm:jit:bf16",
        "undef",
        "src:bf16::blocked:ab::f0 wei:bf16::blocked:ab::f0 dst:f32::blocked:ab::f0",
        "",
        "",
        "512x128:128x512",
        "0.4",
    )
    census = Census.from_verbose(line + "\n", None, ISA_AVX512_BF16)
    assert census.gemm_isa_share() == {"avx512_core_bf16": 1.0}
    assert census_problem(MODES["bf16"], "avx512_core_bf16", census) is None
    # never AMX: on an AMX machine such a kernel does not meet the AMX promise
    on_amx = Census.from_verbose(line + "\n", None, ISA_SPR)
    assert on_amx.gemm_isa_share() == {"avx512_core_fp16": 1.0}
    assert census_problem(MODES["bf16"], "amx", on_amx) is not None
    # reference code is no ISA at all
    ref = onednn_exec(
        "matmul",
        "ref:any",
        "undef",
        "src:bf16::blocked:ab::f0 wei:bf16::blocked:ab::f0",
        "",
        "",
        "512x128:128x512",
        "9.0",
    )
    assert Census.from_verbose(ref + "\n", None, ISA_AVX512_BF16).gemm_isa_share() == {"any": 1.0}
