"""Whether a mode may run on this machine, decided in the parent before any worker starts."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from harness.errors import HarnessError
from harness.launch.job import WorkerContext
from harness.machine.platform import Platform
from harness.precision.modes import PrecisionMode, admit


def context_for(mode: PrecisionMode, platform: Platform, cores: Sequence[int]) -> WorkerContext:
    """What the parent tells the mode's worker about this machine: how the mode is admitted here
    (emulated only where the caller allowed it), the ISA its GEMMs must run on, the machine's
    fingerprint key and the cores. Warns, on stderr, of emulated low-precision GEMMs without
    AVX-512: there PyTorch falls back to a scalar bf16 kernel for some layouts
    (pytorch/pytorch#146508), so a BERT-Large step takes many minutes."""
    admission = admit(mode, platform)
    if admission.emulated and not platform.avx512 and (mode.autocast or mode.fp32_math != "ieee"):
        print(
            f"warning: {mode.name} is emulated on a CPU without AVX-512: PyTorch's "
            f"{mode.autocast or mode.fp32_math} GEMMs run a scalar fallback here, orders of magnitude "
            "slower than fp32; fine for a tiny model, hours for BERT-Large",
            file=sys.stderr,
            flush=True,
        )
    return WorkerContext(
        emulated=admission.emulated,
        missing_features=tuple(admission.missing),
        gemm_isa=admission.gemm_isa,
        amx_usable=platform.amx_usable,
        cpu_model=platform.cpu_model,
        machine_key=platform.key(),
        cores=tuple(cores),
    )


def admitted(
    mode: PrecisionMode, platform: Platform, cores: Sequence[int], allow_emulation: bool, flag: str
) -> WorkerContext:
    """context_for a mode that may run here; refuses (one line naming `flag`) a mode that would
    compute something else here, or an emulated one unless allow_emulation."""
    admission = admit(mode, platform)
    if not admission.runs(allow_emulation):
        hint = "; --allow-emulation runs it anyway, marked emulated" if admission.emulated else ""
        raise HarnessError(f"{flag} {mode.name}: {admission.reason} ({platform.cpu_model}){hint}")
    return context_for(mode, platform, cores)
