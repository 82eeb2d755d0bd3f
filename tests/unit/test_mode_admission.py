"""Admission, same-computation and fingerprints, judged on fixed machines: the Platform values of
tests/platforms.py, never detect()."""

from __future__ import annotations

import dataclasses

import pytest
from platforms import SAPPHIRE_RAPIDS, SAPPHIRE_RAPIDS_AMX_HIDDEN, SKYLAKE_X, ZEN3, ZEN5

from harness.machine.platform import Platform
from harness.precision.modes import BUILTIN, PrecisionMode, admit, same_computation
from harness.train.prepare_backend import transposes_weight_grads

MODES: dict[str, PrecisionMode] = {m.name: m for m in BUILTIN}


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
    assert ZEN3.key() != ZEN5.key()
    # the flags alone tell them apart, with family, model and stepping made equal
    alike = dataclasses.replace(ZEN5, family=ZEN3.family, model=ZEN3.model, stepping=ZEN3.stepping)
    assert alike.key() != ZEN3.key()
    assert ZEN3.fingerprint()["flags_digest"] != ZEN5.fingerprint()["flags_digest"]


def test_fingerprint_is_equal_for_equal_platforms():
    twin = dataclasses.replace(ZEN3, flags=list(ZEN3.flags), versions=dict(ZEN3.versions))
    assert twin is not ZEN3 and twin == ZEN3
    assert twin.key() == ZEN3.key()
    # the order of the flags, the memory and the logical CPUs do not decide comparability...
    shuffled = dataclasses.replace(ZEN3, flags=list(reversed(ZEN3.flags)), memory_gib=503.5, logical_cpus=4)
    assert shuffled.key() == ZEN3.key()
    # ...the cores, AMX's usability and the library builds do
    for changed in (
        dataclasses.replace(ZEN3, physical_cores=4),
        dataclasses.replace(SAPPHIRE_RAPIDS, amx_usable=False),
        dataclasses.replace(ZEN3, versions={**ZEN3.versions, "onednn": "3.11.0"}),
    ):
        base = SAPPHIRE_RAPIDS if changed.vendor == "GenuineIntel" else ZEN3
        assert changed.key() != base.key()


# ------------------------------------------------------------------------- fused weight gradients


@pytest.mark.parametrize(
    ("platform", "transposed"),
    [
        (SAPPHIRE_RAPIDS, {"bf16"}),
        (SAPPHIRE_RAPIDS_AMX_HIDDEN, set()),
        (ZEN5, set()),
        (ZEN3, set()),
    ],
)
def test_only_bf16_gemms_on_amx_read_their_gradients_transposed(platform, transposed):
    """The fused backend's weight-gradient GEMMs read a contiguous transpose only where they run
    in bf16 on AMX: bf16-pure has no autocast, avx-bf16 stays off AMX, fp32 runs in MKL."""
    assert {
        name for name, mode in MODES.items() if transposes_weight_grads(mode, admit(mode, platform).gemm_isa)
    } == transposed
