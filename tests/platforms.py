"""Machines the tests reason about, built as Platform values (never from detect(), which reads the host).

Each stands for one kind of CPU the harness must judge correctly whatever machine runs the tests:

    SAPPHIRE_RAPIDS             Xeon 4th gen: AVX-512 with BF16 and FP16, AMX usable
    SAPPHIRE_RAPIDS_AMX_HIDDEN  the same CPU in a VM whose hypervisor hides AMX (AVX512_BF16/FP16 remain)
    ZEN5                        EPYC Turin: AVX-512 with BF16 and VNNI, no FP16, no AMX
    SKYLAKE_X                   Xeon 1st gen Scalable: AVX-512 (F/CD/BW/DQ/VL) without BF16 or FP16
    ZEN3                        EPYC Milan: AVX2 only

ZEN3 and ZEN5 share the model string "AMD EPYC" (as in cloud VMs that mask the brand): only the
family, model and flags tell them apart.
"""

from __future__ import annotations

from harness.machine.platform import Platform

VERSIONS = {"torch": "2.13.0+cpu", "onednn": "3.12.0", "mkl": "2024.2"}

_BASE = [
    "fpu",
    "vme",
    "de",
    "pse",
    "tsc",
    "msr",
    "pae",
    "mce",
    "cx8",
    "apic",
    "sep",
    "mtrr",
    "pge",
    "mca",
    "cmov",
    "pat",
    "pse36",
    "clflush",
    "mmx",
    "fxsr",
    "sse",
    "sse2",
    "ht",
    "syscall",
    "nx",
    "pdpe1gb",
    "rdtscp",
    "lm",
    "constant_tsc",
    "rep_good",
    "nopl",
    "xtopology",
    "cpuid",
    "pni",
    "pclmulqdq",
    "ssse3",
    "fma",
    "cx16",
    "pcid",
    "sse4_1",
    "sse4_2",
    "x2apic",
    "movbe",
    "popcnt",
    "aes",
    "xsave",
    "avx",
    "f16c",
    "rdrand",
    "hypervisor",
    "lahf_lm",
    "abm",
    "3dnowprefetch",
    "fsgsbase",
    "bmi1",
    "avx2",
    "smep",
    "bmi2",
    "erms",
    "invpcid",
    "rdseed",
    "adx",
    "smap",
    "clflushopt",
    "clwb",
    "sha_ni",
    "xsaveopt",
    "xsavec",
    "xgetbv1",
    "xsaves",
    "osxsave",
    "arat",
    "umip",
]
_AVX512_SKX = ["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"]
_AVX512_ICX = [
    "avx512ifma",
    "avx512vbmi",
    "avx512_vbmi2",
    "gfni",
    "vaes",
    "vpclmulqdq",
    "avx512_vnni",
    "avx512_bitalg",
    "avx512_vpopcntdq",
]
_SPR_EXTRA = [
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "serialize",
    "tsxldtrk",
    "movdiri",
    "movdir64b",
    "fsrm",
    "wbnoinvd",
    "ibrs",
    "stibp",
    "arch_capabilities",
]
_AMX = ["amx_bf16", "amx_tile", "amx_int8"]
_AMD = [
    "extd_apicid",
    "cmp_legacy",
    "cr8_legacy",
    "sse4a",
    "misalignsse",
    "topoext",
    "perfctr_core",
    "clzero",
    "xsaveerptr",
    "rdpru",
    "wbnoinvd",
    "vaes",
    "vpclmulqdq",
    "rdpid",
    "fsrm",
]


def _flags(*groups: list[str]) -> list[str]:
    return sorted({flag for group in groups for flag in group})


def _machine(**fields) -> Platform:
    defaults = dict(
        stepping=1,
        avx512=False,
        avx512_bf16=False,
        avx512_fp16=False,
        avx512_vnni=False,
        amx_tile=False,
        amx_bf16=False,
        amx_int8=False,
        amx_fp16=False,
        amx_os_enabled=False,
        amx_permission=False,
        amx_usable=False,
        logical_cpus=2,
        physical_cores=2,
        sockets=1,
        numa_nodes=1,
        memory_gib=7.7,
        torch_cpu_capability="AVX512",
        versions=dict(VERSIONS),
    )
    return Platform(**{**defaults, **fields})


SAPPHIRE_RAPIDS = _machine(
    cpu_model="Intel(R) Xeon(R) Platinum 8480+",
    vendor="GenuineIntel",
    family=6,
    model=143,
    stepping=8,
    flags=_flags(_BASE, _AVX512_SKX, _AVX512_ICX, _SPR_EXTRA, _AMX),
    avx512=True,
    avx512_bf16=True,
    avx512_fp16=True,
    avx512_vnni=True,
    amx_tile=True,
    amx_bf16=True,
    amx_int8=True,
    # x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM PKRU, and the tile configuration and data (bits 17, 18)
    xcr0="0x602e7",
    amx_os_enabled=True,
    amx_permission=True,
    amx_usable=True,
)

SAPPHIRE_RAPIDS_AMX_HIDDEN = _machine(
    cpu_model="Intel(R) Xeon(R) Platinum 8480+",
    vendor="GenuineIntel",
    family=6,
    model=143,
    stepping=8,
    flags=_flags(_BASE, _AVX512_SKX, _AVX512_ICX, _SPR_EXTRA),
    avx512=True,
    avx512_bf16=True,
    avx512_fp16=True,
    avx512_vnni=True,
    xcr0="0x2e7",
)

ZEN5 = _machine(
    cpu_model="AMD EPYC",
    vendor="AuthenticAMD",
    family=26,
    model=2,
    stepping=0,
    flags=_flags(_BASE, _AMD, _AVX512_SKX, _AVX512_ICX, ["avx_vnni", "avx512_bf16", "avx512_vp2intersect"]),
    avx512=True,
    avx512_bf16=True,
    avx512_vnni=True,
    xcr0="0x2e7",
)

SKYLAKE_X = _machine(
    cpu_model="Intel(R) Xeon(R) Platinum 8180 CPU @ 2.50GHz",
    vendor="GenuineIntel",
    family=6,
    model=85,
    stepping=4,
    flags=_flags([f for f in _BASE if f not in ("sha_ni", "umip")], _AVX512_SKX),
    avx512=True,
    # with the MPX bound registers (bits 3 and 4) of Skylake
    xcr0="0x2ff",
)

ZEN3 = _machine(
    cpu_model="AMD EPYC",
    vendor="AuthenticAMD",
    family=25,
    model=1,
    stepping=1,
    flags=_flags(_BASE, _AMD),
    xcr0="0x207",
    torch_cpu_capability="AVX2",
)

ALL = {
    "SAPPHIRE_RAPIDS": SAPPHIRE_RAPIDS,
    "SAPPHIRE_RAPIDS_AMX_HIDDEN": SAPPHIRE_RAPIDS_AMX_HIDDEN,
    "ZEN5": ZEN5,
    "SKYLAKE_X": SKYLAKE_X,
    "ZEN3": ZEN3,
}
