"""The kernel census of a real training step, and the ISA verdict drawn from it.

One untimed step of every run executes with oneDNN's and MKL's verbose output on
(harness.precision.probe.recorded). Each line names a kernel, its ISA and data type, and its time;
grouped, they say which library and which ISA computed the step's GEMMs and for how long. A run's
validity comes from that census, not from a probe of our own: an `avx-*` run that ran any AMX
kernel, or a bf16/bf32 run whose GEMM time is under GEMM_SHARE_FLOOR on the ISA its machine
promises (harness.precision.modes.admit), is invalid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.precision import mkl_verbose, onednn_verbose
from harness.precision.modes import PrecisionMode

GEMM_SHARE_FLOOR = 0.9
"""The share of a bf16/bf32 step's GEMM time that must run on the promised ISA."""

BF16_NATIVE_ISAS = ("avx512_core_bf16", "avx512_core_fp16", "avx10_1_512", "avx10_2_512")
"""oneDNN ISAs below AMX with bf16 dot-product instructions (AVX512_BF16 and its successors)."""


@dataclass(frozen=True)
class Entry:
    """Calls of one kernel, in one data type."""

    library: str
    """onednn or mkl."""
    primitive: str
    """oneDNN's primitive (matmul, inner_product, reorder, ...) or MKL's function (SGEMM, SDOT)."""
    kernel: str
    """oneDNN's implementation (brg_matmul:avx512_core_bf16); MKL's function again."""
    isa: str
    """oneDNN's ISA (harness.precision.onednn_verbose.implementation_isa), or `mkl:` and the ISA MKL's header
    names (mkl:avx2)."""
    dtype: str | None
    gemm: bool
    amx_tiles: bool
    """Computed on AMX's tiles (onednn_verbose.Execution.on_amx_tiles), not merely at an AMX level."""
    batched: bool
    """A batched GEMM: attention's scores and context (Execution.is_batched, Call.is_batched)."""
    calls: int
    time_ms: float
    gflop: float | None
    """Summed over the calls; None where a call's shape was not printed."""


def _meets(isa: str, promised: str) -> bool:
    if promised == "amx":
        return "amx" in isa
    return "amx" in isa or isa in BF16_NATIVE_ISAS


@dataclass
class Census:
    entries: list[Entry]
    mkl_isa: str | None
    """MKL's header text (read by the ceiling probe: MKL prints it once per process)."""

    @classmethod
    def from_verbose(cls, text: str, mkl_header: str | None, onednn_header: str | None = None) -> Census:
        """The census of what `text` recorded; each library's header (the ISA it settled on) comes
        from the text or, since each prints it once per process, from the ceiling probe."""
        groups: dict[tuple, list] = {}
        report = onednn_verbose.parse(text)
        onednn_header = report.isa or onednn_header
        for e in report.executions:
            isa = onednn_verbose.implementation_isa(e.implementation, onednn_header)
            key = (
                "onednn",
                e.primitive,
                e.implementation,
                isa,
                e.dtype,
                e.is_gemm,
                e.on_amx_tiles,
                e.is_batched,
            )
            groups.setdefault(key, []).append((e.time_ms or 0.0, e.flops))
        header, calls = mkl_verbose.parse(text)
        mkl_header = header or mkl_header
        for c in calls:
            isa = f"mkl:{mkl_verbose.isa_label(mkl_header, c.dtype)}"
            tiles = c.is_gemm and "amx" in isa and c.dtype in onednn_verbose.TILE_DTYPES
            key = ("mkl", c.function, c.function, isa, c.dtype, c.is_gemm, tiles, c.is_batched)
            groups.setdefault(key, []).append((c.time_ms, c.flops))
        entries = []
        for (library, primitive, kernel, isa, dtype, gemm, tiles, batched), runs in groups.items():
            flops = [f for _, f in runs]
            entries.append(
                Entry(
                    library,
                    primitive,
                    kernel,
                    isa,
                    dtype,
                    gemm,
                    tiles,
                    batched,
                    len(runs),
                    sum(t for t, _ in runs),
                    None if None in flops else sum(flops) / 1e9,
                )
            )  # type: ignore[arg-type]
        entries.sort(key=lambda e: -e.time_ms)
        return cls(entries, mkl_header)

    @property
    def gemm_time_ms(self) -> float:
        return sum(e.time_ms for e in self.entries if e.gemm)

    def gemm_isa_share(self) -> dict[str, float]:
        """The share of GEMM time per ISA, largest first."""
        total = self.gemm_time_ms
        shares: dict[str, float] = {}
        for e in self.entries:
            if e.gemm and total > 0:
                shares[e.isa] = shares.get(e.isa, 0.0) + e.time_ms / total
        return dict(sorted(shares.items(), key=lambda kv: -kv[1]))

    def share_on(self, promised: str, dtype: str | None) -> float:
        """The share of GEMM time on an ISA that meets `promised` (in `dtype`, if given)."""
        total = self.gemm_time_ms
        hit = sum(
            e.time_ms
            for e in self.entries
            if e.gemm and _meets(e.isa, promised) and (dtype is None or e.dtype == dtype)
        )
        return hit / total if total > 0 else 0.0

    def gemm_seconds(self) -> tuple[dict[str, float], float]:
        """The GEMMs' seconds by library and ISA (`mkl:avx512`, `onednn:avx10_1_512_amx`), the
        batched ones left out, and the batched ones' (attention's)."""
        by_unit: dict[str, float] = {}
        for e in self.entries:
            if e.gemm and not e.batched:
                unit = e.isa if e.library == "mkl" else f"{e.library}:{e.isa}"  # MKL's isa names it
                by_unit[unit] = by_unit.get(unit, 0.0) + e.time_ms / 1e3
        return by_unit, sum(e.time_ms for e in self.entries if e.gemm and e.batched) / 1e3

    @property
    def amx_kernels(self) -> list[str]:
        """Every kernel at an AMX level, on its tiles or not: what an `avx-*` mode's cap forbids."""
        return [f"{e.primitive}/{e.kernel}" for e in self.entries if "amx" in e.isa]

    @property
    def amx_tile_share(self) -> float:
        """The share of GEMM time computed on AMX's tiles."""
        total = self.gemm_time_ms
        return sum(e.time_ms for e in self.entries if e.gemm and e.amx_tiles) / total if total > 0 else 0.0

    @property
    def kernels(self) -> list[str]:
        """`library:primitive/kernel dtype` of every entry, largest time first."""
        return [f"{e.library}:{e.primitive}/{e.kernel} {e.dtype}" for e in self.entries]

    def summary(self) -> dict:
        """What the run's result records of the census."""
        shares = self.gemm_isa_share()
        return {
            "kernel_census": [asdict(e) for e in self.entries],
            "gemm_isa_share": shares,
            "gemm_isa": next(iter(shares), None),
            "amx_gemm_share": self.amx_tile_share,
            "mkl_isa": self.mkl_isa,
            "kernels": self.kernels,
            "amx_used": any(e.amx_tiles for e in self.entries),
        }


def ceiling_problem(mode: PrecisionMode, onednn_isa: str | None) -> str | None:
    """Why the ceiling oneDNN reported before training contradicts the mode, or None."""
    if onednn_isa is None:
        return "oneDNN reported no ISA: the cap cannot be verified"
    if not mode.admits_amx and "amx" in onednn_isa.lower():
        return f"{mode.name} must stay off AMX but oneDNN allows itself {onednn_isa!r}"
    return None


def census_problem(mode: PrecisionMode, promised: str | None, census: Census) -> str | None:
    """Why the census of the real step contradicts the mode, whose GEMMs must run on `promised`
    here (harness.precision.modes.Admission.gemm_isa), or None."""
    if not mode.admits_amx and census.amx_kernels:
        return f"{mode.name} must stay off AMX but the step ran {', '.join(census.amx_kernels)}"
    bf16 = [f"{e.primitive}/{e.kernel}" for e in census.entries if e.dtype == "bf16"]
    if mode.computes_fp32 and bf16:
        # an ISA name such as avx512_core_bf16 on f32 data is only oneDNN's JIT level: the data type
        # is what tells fp32 math from bf16
        return f"{mode.name} computes in fp32 but the step ran bf16 kernels: {', '.join(bf16)}"
    if promised is None:
        return None
    dtype = "bf16" if mode.gemm_dtype == "bfloat16" else None
    share = census.share_on(promised, dtype)
    if share < GEMM_SHARE_FLOOR:
        seen = ", ".join(f"{k} {v:.0%}" for k, v in census.gemm_isa_share().items()) or "no GEMM at all"
        return (
            f"{mode.name} must run its GEMMs on {promised} here, but {share:.0%} of the step's GEMM "
            f"time did (under {GEMM_SHARE_FLOOR:.0%}; seen: {seen})"
        )
    return None
