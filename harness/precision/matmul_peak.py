"""The matmul peak of one precision mode, timed in its worker.

A mode's GEMMs may run in more than one library: stock PyTorch sends fp32 `torch.mm` to MKL, while
oneDNN's own fp32 GEMM can be faster (as on AMD CPUs with AVX-512). So each mode's worker times a
large square matmul through every path it may take, `torch.mm` and a direct oneDNN linear, in the
mode's compute dtype, names the library and kernel from the call's own verbose output, and keeps
the best: the hardware's peak, not one library's. Each mode runs in its own worker process (its
ISA environment must be in place before oneDNN initialises); harness.precision.roofline stores
the peaks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from harness.errors import HarnessError
from harness.precision import stream
from harness.precision.census import Census
from harness.precision.modes import PrecisionMode
from harness.precision.probe import recorded
from harness.results.stats import Spread


def _paths(mode: PrecisionMode, size: int) -> dict[str, Callable[[], object]]:
    """The ways a GEMM of this mode may run, each a ready-to-call `size`^3 matmul."""
    dtype = getattr(torch, mode.gemm_dtype)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    paths: dict[str, Callable[[], object]] = {"torch.mm": lambda: torch.mm(a, b)}
    if torch.backends.mkldnn.is_available():
        x, w = a.to_mkldnn(), b.to_mkldnn()
        paths["oneDNN linear"] = lambda: torch._C._nn.mkldnn_linear(x, w, None)
    return paths


def _library(call: Callable[[], object]) -> tuple[str, str]:
    """(library, kernel) that computed one call, from its verbose output."""
    with recorded() as recording:
        call()
    gemms = [e for e in Census.from_verbose(recording.text, None).entries if e.gemm]
    if not gemms:
        return "pytorch", "PyTorch's own kernel"
    return gemms[0].library, f"{gemms[0].kernel} ({gemms[0].isa})"


def measure(mode: PrecisionMode, size: int, repeats: int) -> dict:
    """GFLOP/s of `size`^3 matmuls in the mode's compute dtype through every path (in the worker);
    the best path's figures at the top level, and the stream bandwidth beside them."""
    mode.apply_math_mode()
    results = []
    for name, call in _paths(mode, size).items():
        try:
            library, kernel = _library(call)
        except RuntimeError as exc:  # e.g. oneDNN has no bf16 kernel for this CPU
            results.append({"path": name, "unavailable": str(exc).splitlines()[0]})
            continue
        for _ in range(3):  # JIT kernel generation, page faults, thread start-up
            call()
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
        spread = Spread.of(rates)
        results.append(
            {
                "path": name,
                "library": library,
                "kernel": kernel,
                "gflops": spread.median,
                "gflops_p10": spread.p10,
                "gflops_p90": spread.p90,
            }
        )
    timed = [r for r in results if "gflops" in r]
    if not timed:
        raise HarnessError(f"roofline {mode.name}: no path could run ({results})")
    best = max(timed, key=lambda r: r["gflops"])
    return {
        **best,
        **stream.bandwidth(repeats),
        "paths": results,
        "size": size,
        "repeats": repeats,
        "dtype": mode.gemm_dtype,
        "threads": torch.get_num_threads(),
    }
