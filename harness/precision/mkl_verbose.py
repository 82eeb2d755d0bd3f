"""Parse MKL's verbose output (MKL_VERBOSE=1, or torch.backends.mkl.verbose): its ISA and each call.

    MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R)
      Advanced Vector Extensions 2 (Intel(R) AVX2) enabled processors, Lnx 2.45GHz lp64 gnu_thread
    MKL_VERBOSE SGEMM(T,N,512,64,256,0x7ffe...,256,...) 6.64ms CNR:OFF Dyn:1 FastMM:1 TID:0  NThr:2
    MKL_VERBOSE SGEMM_BATCH(N,N,0x7ffe6b135128,...) 32.20us CNR:OFF Dyn:1 FastMM:1 TID:0  NThr:2

MKL prints its header once per process, at the first call made with verbose on. On a CPU that is
not Intel's it names no ISA extension ("Intel(R) Architecture processors"). Batched calls pass
their sizes by pointer, so their FLOPs are unknown.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_HEADER = re.compile(r"^MKL_VERBOSE (?:Intel\(R\) MKL|oneMKL) .*? architecture (?P<isa>.*?), (?:Lnx|Win|Mac)")
_CALL = re.compile(r"^MKL_VERBOSE (?P<fn>[A-Z0-9_]+)\((?P<args>[^)]*)\) (?P<t>[\d.]+)(?P<unit>ns|us|ms|s)\b")
_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class Call:
    function: str
    """e.g. SGEMM, SGEMM_BATCH, GEMM_BF16BF16F32, SDOT."""
    args: tuple[str, ...]
    time_ms: float

    @property
    def is_gemm(self) -> bool:
        return "GEMM" in self.function and "GEMV" not in self.function

    @property
    def is_batched(self) -> bool:
        """SGEMM_BATCH and its kin: attention's scores and context, a batch of matrices a call."""
        return self.is_gemm and "_BATCH" in self.function

    @property
    def dtype(self) -> str:
        fn = self.function
        for prefix, dtype in (
            ("GEMM_BF16", "bf16"),
            ("GEMM_F16", "f16"),
            ("GEMM_S8", "s8"),
            ("GEMM_U8", "s8"),
            ("S", "f32"),
            ("D", "f64"),
            ("C", "c64"),
            ("Z", "c128"),
        ):
            if fn.startswith(prefix):
                return dtype
        return "?"

    @property
    def sizes(self) -> tuple[int, int, int] | None:
        """M, N, K of a GEMM whose sizes are given as numbers (batched calls log pointers)."""
        numbers = [int(a) for a in self.args if a.isdigit()]
        return (numbers[0], numbers[1], numbers[2]) if self.is_gemm and len(numbers) >= 3 else None

    @property
    def flops(self) -> float | None:
        """2 x M x N x K for a GEMM whose sizes are given as numbers (not for batched calls)."""
        return 2.0 * math.prod(self.sizes) if self.sizes is not None else None


FLOAT_DTYPES = ("f32", "f64", "c64", "c128")


def isa_label(header: str | None, dtype: str | None = None) -> str:
    """A short name for the ISA MKL's header names: avx512_amx, avx512_bf16, avx512_vnni, avx512,
    avx2, avx, or generic (the header names no extension, as on CPUs not Intel's). For a call in a
    floating-point type MKL computes natively (`dtype` f32, f64, c64, c128) only the vector ISA
    counts: AMX, BF16 and VNNI have no such arithmetic."""
    text = (header or "").upper()
    if dtype in FLOAT_DTYPES:
        text = text.split(" WITH ")[0]
    if "AMX" in text or "ADVANCED MATRIX" in text:
        return "avx512_amx"
    if "AVX-512" in text or "AVX512" in text or "VECTOR EXTENSIONS 512" in text:
        if "BF16" in text or "BFLOAT16" in text:
            return "avx512_bf16"
        return "avx512_vnni" if "DL BOOST" in text or "INT8" in text or "VNNI" in text else "avx512"
    if "AVX2" in text or "VECTOR EXTENSIONS 2" in text:
        return "avx2"
    return "avx" if "AVX" in text else "generic"


def parse(text: str) -> tuple[str | None, list[Call]]:
    """(the header's ISA text or None, every call in order)."""
    header, calls = None, []
    for line in text.splitlines():
        line = line.strip()
        if (m := _HEADER.match(line)) is not None:
            header = m["isa"]
        elif (m := _CALL.match(line)) is not None:
            calls.append(
                Call(
                    m["fn"],
                    tuple(a.strip() for a in m["args"].split(",")),
                    float(m["t"]) * _UNIT_MS[m["unit"]],
                )
            )
    return header, calls
