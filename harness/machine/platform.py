"""What this CPU can do: CPUID through py-cpuinfo, plus whether the OS lets a process use AMX.

AMX needs three things: the CPU has it (CPUID), the OS saves its tile state (XCR0 bits 17 and 18,
read with XGETBV), and Linux grants the process permission to use the large XTILEDATA state
(arch_prctl ARCH_REQ_XCOMP_PERM). A hypervisor may hide the CPUID bits of a CPU that has AMX;
then AMX is simply not there for us, whatever the model name says.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import cpuinfo
import torch

from harness.machine.versions import library_versions

XTILECFG_BIT, XTILEDATA_BIT = 17, 18
ARCH_REQ_XCOMP_PERM, SYS_ARCH_PRCTL = 0x1023, 158

# x86-64 machine code for `uint64_t xgetbv0(void)`: xor ecx,ecx; xgetbv; shl rdx,32; or rax,rdx; ret
_XGETBV0 = bytes([0x31, 0xC9, 0x0F, 0x01, 0xD0, 0x48, 0xC1, 0xE2, 0x20, 0x48, 0x09, 0xD0, 0xC3])


@dataclass(frozen=True)
class Platform:
    cpu_model: str
    vendor: str
    family: int | None
    model: int | None
    stepping: int | None
    flags: list[str]
    avx512: bool
    avx512_bf16: bool
    avx512_fp16: bool
    avx512_vnni: bool
    amx_tile: bool
    amx_bf16: bool
    amx_int8: bool
    amx_fp16: bool
    xcr0: str | None
    """XCR0 in hex (None where XGETBV cannot run): the state components the OS saves."""
    amx_os_enabled: bool
    """XCR0 has the tile configuration and tile data bits set (the OS saves AMX state)."""
    amx_permission: bool
    """Linux granted this process the XTILEDATA state (arch_prctl ARCH_REQ_XCOMP_PERM)."""
    amx_usable: bool
    logical_cpus: int
    physical_cores: int
    sockets: int
    numa_nodes: int
    memory_gib: float
    torch_cpu_capability: str
    versions: dict

    def has(self, feature: str) -> bool:
        """A capability (CAPABILITIES) or a boolean Platform field."""
        if feature in CAPABILITIES:
            return CAPABILITIES[feature][1](self)
        return bool(getattr(self, feature))

    def lacks(self, features: tuple[str, ...]) -> list[str]:
        """The features (capabilities or Platform field names) this machine does not have."""
        return [f for f in features if not self.has(f)]

    @property
    def bf16_isa(self) -> str | None:
        """The best bf16 GEMM unit here, in oneDNN's ISA names: AMX where a process may use it, else
        AVX512_BF16's, else None (bf16 has no instructions here: it is emulated)."""
        if self.amx_usable:
            return "amx"
        return "avx512_core_bf16" if self.avx512_bf16 else None

    @property
    def vector_isa(self) -> str:
        """The widest vector ISA, in oneDNN's names: where fp32 GEMMs run."""
        has = set(self.flags).__contains__
        if self.avx512:
            return "avx512_core"
        return next(
            (isa for flag, isa in (("avx2", "avx2"), ("avx", "avx"), ("sse4_1", "sse41")) if has(flag)),
            "sse2",
        )

    def fingerprint(self) -> dict:
        """What must match for two throughputs to be comparable: the CPU (vendor, family, model,
        stepping, a digest of its flags: a Zen 3 and a Zen 5 VM share the model string), its cores
        and AMX's usability, and the library builds that pick the kernels."""
        return fingerprint(as_dict(self))

    def key(self) -> str:
        """The fingerprint as one string: the key of this machine's stored peaks and kernel builds."""
        return fingerprint_key(as_dict(self))


CAPABILITIES: dict[str, tuple[str, Callable[[Platform], bool]]] = {
    "avx512": ("AVX-512 (F)", lambda p: p.avx512),
    "avx512_bf16": ("AVX512_BF16 instructions", lambda p: p.avx512_bf16),
    "amx": (
        "AMX-BF16 usable by this process (CPUID, OS tile state, XTILEDATA permission)",
        lambda p: p.amx_usable,
    ),
    "bf16": ("native bf16 GEMMs: usable AMX-BF16 or AVX512_BF16", lambda p: p.bf16_isa is not None),
}
"""What a precision mode may require: name -> (what it means, whether a machine has it)."""

FINGERPRINT_FIELDS = (
    "vendor",
    "cpu_model",
    "family",
    "model",
    "stepping",
    "flags_digest",
    "physical_cores",
    "sockets",
    "amx_usable",
)
FINGERPRINT_VERSIONS = ("torch", "onednn", "mkl")
"""Library builds that decide which kernels run; the harness's own commit is what a gate tests."""


def fingerprint(machine: dict) -> dict:
    """The fingerprint fields of a machine record (as_dict, or a run set's machine.json)."""
    versions = machine.get("versions", {})
    out = {k: machine.get(k) for k in FINGERPRINT_FIELDS}
    out.update({k: versions.get(k) for k in FINGERPRINT_VERSIONS})
    return out


def fingerprint_key(machine: dict) -> str:
    """The fingerprint as one stable string, for keying stored measurements."""
    fp = fingerprint(machine)
    return " | ".join(f"{k}={fp[k]}" for k in sorted(fp))


def xgetbv0() -> int:
    """XCR0. Only call it on x86-64 with OSXSAVE set: elsewhere XGETBV is an illegal instruction."""
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(_XGETBV0)
    anchor = ctypes.c_char.from_buffer(page)
    value = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(anchor))()
    del anchor  # the buffer export must end before the page can be unmapped
    page.close()
    return int(value)


def request_amx_permission() -> bool:
    """Ask Linux for the XTILEDATA state; True if granted (idempotent, per process)."""
    if os.uname().machine != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XTILEDATA_BIT) == 0


def _topology() -> tuple[int, int]:
    """(physical cores, sockets) from sysfs; falls back to logical CPUs and one socket."""
    cores, sockets = set(), set()
    for topo in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology"):
        try:
            package = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
        except OSError:
            continue
        cores.add((package, core))
        sockets.add(package)
    return (len(cores) or os.cpu_count() or 1, len(sockets) or 1)


def _memory_gib() -> float:
    match = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    return round(int(match.group(1)) / 2**20, 1) if match else 0.0


@cache
def detect() -> Platform:
    info = cpuinfo.get_cpu_info()  # py-cpuinfo runs CPUID itself, ~1 s: called once per process
    flags = sorted(set(info.get("flags", [])))
    has = set(flags).__contains__
    xcr0 = xgetbv0() if os.uname().machine == "x86_64" and has("osxsave") else None
    os_enabled = xcr0 is not None and all(xcr0 >> b & 1 for b in (XTILECFG_BIT, XTILEDATA_BIT))
    amx_bf16 = has("amx_bf16")
    permission = request_amx_permission() if amx_bf16 and os_enabled else False
    cores, sockets = _topology()
    nodes = len(list(Path("/sys/devices/system/node").glob("node[0-9]*"))) or 1
    return Platform(
        cpu_model=info.get("brand_raw", "unknown"),
        vendor=info.get("vendor_id_raw", "unknown"),
        family=info.get("family"),
        model=info.get("model"),
        stepping=info.get("stepping"),
        flags=flags,
        avx512=has("avx512f"),
        avx512_bf16=has("avx512_bf16"),
        avx512_fp16=has("avx512_fp16"),
        avx512_vnni=has("avx512_vnni") or has("avx512vnni"),
        amx_tile=has("amx_tile"),
        amx_bf16=amx_bf16,
        amx_int8=has("amx_int8"),
        amx_fp16=has("amx_fp16"),
        xcr0=None if xcr0 is None else hex(xcr0),
        amx_os_enabled=os_enabled,
        amx_permission=permission,
        amx_usable=amx_bf16 and os_enabled and permission,
        logical_cpus=os.cpu_count() or 1,
        physical_cores=cores,
        sockets=sockets,
        numa_nodes=nodes,
        memory_gib=_memory_gib(),
        torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
        versions=library_versions(),
    )


def as_dict(platform: Platform) -> dict:
    """The platform as a record, with a digest of its long flag list (enough to tell two CPUs apart)."""
    record = asdict(platform)
    record["flags_digest"] = hashlib.sha256(" ".join(sorted(platform.flags)).encode()).hexdigest()[:16]
    return record


def format_table(p: Platform) -> str:
    yes = {True: "yes", False: "no"}
    rows = [
        ("CPU", f"{p.cpu_model} ({p.vendor}, family {p.family} model {p.model} stepping {p.stepping})"),
        (
            "cores",
            f"{p.physical_cores} physical, {p.logical_cpus} logical, {p.sockets} socket(s), "
            f"{p.numa_nodes} NUMA node(s), {p.memory_gib} GiB",
        ),
        (
            "AVX-512",
            f"F {yes[p.avx512]}, BF16 {yes[p.avx512_bf16]}, FP16 {yes[p.avx512_fp16]}, "
            f"VNNI {yes[p.avx512_vnni]}",
        ),
        (
            "AMX (CPUID)",
            f"TILE {yes[p.amx_tile]}, BF16 {yes[p.amx_bf16]}, INT8 {yes[p.amx_int8]}, FP16 {yes[p.amx_fp16]}",
        ),
        (
            "AMX (OS)",
            f"XCR0 {p.xcr0}: tile state {yes[p.amx_os_enabled]}, XTILEDATA permission "
            f"{yes[p.amx_permission]}",
        ),
        ("AMX usable", yes[p.amx_usable]),
        (
            "torch",
            f"{p.versions.get('torch')}, CPU capability {p.torch_cpu_capability}, oneDNN "
            f"{p.versions.get('onednn')}, MKL {p.versions.get('mkl')}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
