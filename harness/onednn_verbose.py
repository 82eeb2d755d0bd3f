"""Parse oneDNN's verbose output: the ISA oneDNN settled on and the kernels that ran.

Formats differ between versions; the parser anchors on field names, not column numbers:

    dnnl_verbose,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions  (2.x)
    dnnl_verbose,exec,cpu,inner_product,brgemm:avx512_core_amx,forward_training,...           (2.x)
    onednn_verbose,info,cpu,isa:Intel AVX-512 with Intel DL Boost                             (3.0-3.3)
    onednn_verbose,exec,cpu,matmul,brg:avx512_core_amx,undef,...                              (3.0-3.3)
    onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with float16, ... and Intel AMX with bfloat16 ...  (3.4+)
    onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx10_1_512_amx,undef,...         (3.4+)

A timestamp column (ONEDNN_VERBOSE_TIMESTAMP=1) may stand before the marker; it is skipped too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_PREFIXES = ("onednn_verbose", "dnnl_verbose")


@dataclass
class VerboseReport:
    isa: str | None = None
    """The `isa:` text of the info header: the highest ISA oneDNN allows itself (cap applied)."""
    kernels: list[str] = field(default_factory=list)
    """Distinct `primitive/implementation` pairs that executed, in first-seen order."""

    @property
    def amx_used(self) -> bool:
        return any("amx" in k.split("/", 1)[1] for k in self.kernels)

    @property
    def amx_allowed(self) -> bool:
        """The header names AMX: the cap (if any) leaves oneDNN free to use it."""
        return self.isa is not None and "amx" in self.isa.lower()

    @property
    def kernel_isas(self) -> list[str]:
        """The ISA suffix of each implementation name (`brg_matmul:avx512_core_amx` -> avx512_core_amx)."""
        out: list[str] = []
        for k in self.kernels:
            impl = k.split("/", 1)[1]
            isa = impl.rsplit(":", 1)[1] if ":" in impl else impl
            if isa not in out:
                out.append(isa)
        return out


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
                report.isa = ",".join(fields[i + 2:]).removeprefix("isa:").strip()
        elif "exec" in fields:
            i = fields.index("exec")
            if len(fields) > i + 3 and fields[i + 1] == "cpu":
                kernel = f"{fields[i + 2]}/{fields[i + 3]}"
                if kernel not in report.kernels:
                    report.kernels.append(kernel)
    return report
