"""Parse oneDNN's verbose output: the ISA oneDNN settled on, and each kernel execution.

Formats differ between versions; the parser anchors on field names, not column numbers:

    dnnl_verbose,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions  (2.x)
    dnnl_verbose,exec,cpu,inner_product,brgemm:avx512_core_amx,forward_training,...           (2.x)
    onednn_verbose,info,cpu,isa:Intel AVX-512 with Intel DL Boost                             (3.0-3.3)
    onednn_verbose,exec,cpu,matmul,brg:avx512_core_amx,undef,...                              (3.0-3.3)
    onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with float16, ... and Intel AMX with bfloat16 ...  (3.4+)
    onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx10_1_512_amx,undef,...         (3.4+)

A timestamp column (ONEDNN_VERBOSE_TIMESTAMP=1) may stand before the marker; it is skipped too.
After the marker come the primitive, the implementation (`name:isa`), the propagation kind, the
memory descriptors, attributes, auxiliary fields, the problem (`MxK:KxN` for matmul,
`mb8ic1024oc4096` for inner_product) and the execution time in milliseconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_PREFIXES = ("onednn_verbose", "dnnl_verbose")
_DTYPES = ("f32", "bf16", "f16", "s8", "u8", "s32", "f64", "f8_e5m2", "f8_e4m3", "s4", "u4")
GEMM_PRIMITIVES = ("matmul", "inner_product")
TILE_DTYPES = ("bf16", "f16", "s8", "u8")
"""The types AMX's tiles multiply (AMX-BF16, AMX-FP16, AMX-INT8): f32 reaches them only as the
bf16 or f16 math an attribute allows (attr-fpmath)."""
_FPMATH = re.compile(r"attr-fpmath:(\w+)")


@dataclass(frozen=True)
class Execution:
    """One `exec` line: a primitive that ran."""

    primitive: str
    implementation: str
    """e.g. `brg_matmul:avx512_core_bf16`."""
    dtype: str | None
    """The data type a GEMM computes in: its inputs' (weights, else source, else the gradient it
    receives), never an output's (a bf16 GEMM may write f32 weight gradients)."""
    attributes: str
    """e.g. `attr-fpmath:bf16 attr-scratchpad:user`: bf16 math on f32 data shows here."""
    problem: str
    time_ms: float | None

    @property
    def isa(self) -> str:
        """The ISA the implementation names (`brg_matmul:avx10_1_512_amx` -> avx10_1_512_amx)."""
        return implementation_isa(self.implementation, None)

    @property
    def is_gemm(self) -> bool:
        return self.primitive in GEMM_PRIMITIVES

    @property
    def is_batched(self) -> bool:
        """A batch of matrices on both sides (`8x128x128:8x128x64`): attention's scores and context.
        A linear layer on 3-D input multiplies by one 2-D weight (`4x128x128:128x384`)."""
        parts = self.problem.split(":")
        return self.primitive == "matmul" and len(parts) > 1 and parts[1].count("x") > 1

    @property
    def math_dtype(self) -> str | None:
        """The type it multiplies in: its data's, or the bf16/f16 math an f32 kernel is allowed."""
        fpmath = _FPMATH.search(self.attributes)
        if self.dtype == "f32" and fpmath is not None and fpmath.group(1) in TILE_DTYPES:
            return fpmath.group(1)
        return self.dtype

    @property
    def on_amx_tiles(self) -> bool:
        """AMX's tiles computed it: a GEMM at an AMX level that multiplies a type they take. The
        level alone is no evidence: on an AMX machine oneDNN names its JIT kernels after it, and an
        fp32 step's GELU runs `eltwise,jit:avx10_1_512_amx` on f32 data, in vector registers."""
        return self.is_gemm and "amx" in self.isa and self.math_dtype in TILE_DTYPES

    @property
    def flops(self) -> float | None:
        """2 x M x N x K from the problem shape, for the GEMM primitives; None where it is not given."""
        if self.primitive == "matmul" and ":" in self.problem:
            try:
                src, wei = ([int(d) for d in part.split("x")] for part in self.problem.split(":")[:2])
            except ValueError:
                return None
            return 2.0 * math.prod(src) * wei[-1]
        if self.primitive == "inner_product":
            dims = {k: int(v) for k, v in re.findall(r"([a-z]+)(\d+)", self.problem)}
            if {"mb", "ic", "oc"} <= dims.keys():
                spatial = math.prod(dims.get(k, 1) for k in ("id", "ih", "iw"))
                return 2.0 * dims["mb"] * dims["ic"] * dims["oc"] * spatial
        return None


_ISA_TOKEN = re.compile(r"(avx10_\d_512\w*|avx512_core\w*|avx2\w*|avx\b|sse41|uni\b)")


def vector_isa(header: str | None) -> str | None:
    """The best ISA below AMX that oneDNN's `isa:` header allows, in its implementation names:
    where a jit kernel whose name carries no ISA (`gemm:jit`) runs. AMX kernels always say so."""
    t = (header or "").lower()
    if "avx10" in t:
        return "avx10_1_512"
    if "avx-512" in t or "avx512" in t:
        if "float16" in t.split(" and intel amx")[0].replace("bfloat16", ""):
            return "avx512_core_fp16"
        if "bfloat16" in t:
            return "avx512_core_bf16"
        return "avx512_core_vnni" if "dl boost" in t else "avx512_core"
    if "avx2" in t:
        return "avx2_vnni_2" if "bfloat16" in t else "avx2_vnni" if "dl boost" in t else "avx2"
    if "avx" in t:
        return "avx"
    return "sse41" if "sse4.1" in t else None


def implementation_isa(implementation: str, header: str | None) -> str:
    """The ISA of an implementation: the one it names (`brg_matmul:avx512_core_bf16`, `jit:uni` for
    any); its last field for reference C code (`ref:any`); for a jit kernel that names none
    (`gemm:jit`), the header's vector_isa."""
    if (m := _ISA_TOKEN.search(implementation)) is not None:
        return m.group(1)
    if implementation.startswith("ref") or "jit" not in implementation:
        return implementation.rsplit(":", 1)[-1]
    return vector_isa(header) or implementation.rsplit(":", 1)[-1]


def _dtype(descriptors: str) -> str | None:
    """The data type of the first input among weights, source and destination gradient, else of
    the first memory descriptor.

    3.4+: `src:bf16::blocked:ab::f0 wei:bf16:a:blocked:ab::f0`; 2.x-3.3: `src_f32::blocked:ab:f0`."""
    found: dict[str, str] = {}
    for md in descriptors.split():
        head = md.split(":")
        if len(head) > 1 and head[1] in _DTYPES:
            found.setdefault(head[0], head[1])
        else:
            name, _, dtype = head[0].rpartition("_")
            if dtype in _DTYPES:
                found.setdefault(name, dtype)
    for name in ("wei", "src", "diff_dst"):
        if name in found:
            return found[name]
    return next(iter(found.values()), None)


@dataclass
class VerboseReport:
    isa: str | None = None
    """The `isa:` text of the info header: the highest ISA oneDNN allows itself (cap applied)."""
    executions: list[Execution] = field(default_factory=list)
    """Every `exec` line, in order."""

    @property
    def kernels(self) -> list[str]:
        """Distinct `primitive/implementation` pairs that executed, in first-seen order."""
        return list(dict.fromkeys(f"{e.primitive}/{e.implementation}" for e in self.executions))

    @property
    def amx_used(self) -> bool:
        return any(e.on_amx_tiles for e in self.executions)

    @property
    def kernel_isas(self) -> list[str]:
        """The ISA suffix of each implementation, in first-seen order."""
        return list(dict.fromkeys(e.isa for e in self.executions))


def parse(text: str) -> VerboseReport:
    report = VerboseReport()
    for line in text.splitlines():
        fields = line.strip().split(",")
        if fields[0] not in _PREFIXES:
            continue
        if "info" in fields:
            i = fields.index("info")
            if len(fields) > i + 2 and fields[i + 1] == "cpu" and fields[i + 2].startswith("isa:"):
                # The ISA description itself may contain commas.
                report.isa = ",".join(fields[i + 2 :]).removeprefix("isa:").strip()
        elif "exec" in fields:
            i = fields.index("exec")
            if len(fields) > i + 3 and fields[i + 1] == "cpu":
                report.executions.append(_execution(fields[i + 2 :]))
    return report


def _execution(f: list[str]) -> Execution:
    """From the fields after `exec,cpu`: primitive, implementation, prop kind, memory descriptors,
    attributes, auxiliary, problem, time (the short lines of old traces may stop early)."""

    def at(k: int) -> str:
        return f[k] if len(f) > k else ""

    try:
        time_ms = float(f[-1]) if len(f) >= 8 else None
    except ValueError:
        time_ms = None
    return Execution(
        primitive=f[0],
        implementation=f[1],
        dtype=_dtype(at(3)),
        attributes=at(4),
        problem=f[-2] if len(f) >= 8 else "",
        time_ms=time_ms,
    )
