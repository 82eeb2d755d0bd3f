"""Which library computes a run's fp32 GEMMs: MKL, stock PyTorch's choice, or oneDNN.

Stock PyTorch sends fp32 matmuls to MKL. Where oneDNN's fp32 GEMM is the faster (AMD CPUs with
AVX-512; the machine's roofline, `harness roofline`, tells), PyTorch's only way to send them there
is its bf32 switch, `torch.backends.mkldnn.matmul.fp32_precision = "bf16"`: oneDNN then runs them
with a bf16 fpmath attribute, which it applies only on AMX. Without AMX they stay fp32 math, in
oneDNN. Because that rests on oneDNN ignoring the attribute, the route is taken only where AMX is
not usable, and proved in the process before training: a GEMM through it must be oneDNN's, on f32
data, and match float64 to fp32 rounding. Otherwise the run keeps MKL and says why.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from harness.precision import fp32_math
from harness.precision.census import Census
from harness.precision.modes import PrecisionMode
from harness.precision.probe import recorded
from harness.precision.roofline import lookup

MARGIN = 1.10
"""How much faster oneDNN's large-GEMM peak must be for `auto` to take it: BERT's GEMMs are smaller
than the roofline's, and near a tie MKL won most of them (docs/results.md#zen-3-gemm-shapes)."""

EXACT = 1e-5
"""The largest relative error of fp32 math over the proof's k = 1024 products (about 1e-6 seen);
bf16 inputs give about 4e-3."""


@dataclass(frozen=True)
class Route:
    library: str
    """mkl or onednn: where the run's fp32 GEMMs go."""
    reason: str
    """Why, in a line for the run's log and result."""


def choose(requested: str, mode: PrecisionMode, amx_usable: bool, peak: dict | None) -> Route:
    """The route `requested` (auto, mkl or onednn: harness.train.config.Fp32Gemm) gives a mode on
    this machine, whose stored fp32 roofline is `peak` (harness.precision.roofline.lookup, or None)."""
    if mode.fp32_math != "ieee":
        return Route("onednn", f"{mode.name} sets its own fp32 math ({mode.fp32_math}): oneDNN computes it")
    if mode.gemm_dtype != "float32":
        # measured: under the switch a bf16 phase-2 step's few fp32 matmuls took 11% of its GEMM
        # time in oneDNN, and the kernel census then found the step off its bf16 unit
        return Route("mkl", f"{mode.name}'s GEMMs are {mode.gemm_dtype}: its fp32 remainder stays in MKL")
    if requested == "mkl":
        return Route("mkl", "--fp32-gemm mkl")
    if amx_usable:
        return Route(
            "mkl", "AMX is usable here, where PyTorch's only way to oneDNN would compute fp32 GEMMs in bf16"
        )
    if requested == "onednn":
        return Route("onednn", "--fp32-gemm onednn")
    paths = {p["library"]: p["gflops"] for p in (peak or {}).get("paths", []) if "gflops" in p}
    if not {"mkl", "onednn"} <= set(paths):
        return Route(
            "mkl",
            "no fp32 roofline of both libraries on this machine: `harness roofline --precisions fp32` "
            "measures them",
        )
    figures = f"oneDNN {paths['onednn']:.0f} GFLOP/s against MKL's {paths['mkl']:.0f} (harness roofline)"
    if paths["onednn"] >= MARGIN * paths["mkl"]:
        return Route("onednn", f"faster here: {figures}")
    return Route("mkl", f"oneDNN is not {MARGIN - 1:.0%} faster here: {figures}")


def prove() -> str | None:
    """Why fp32 GEMMs under the switch are not fp32 math in oneDNN in this process, or None."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(256, 1024, generator=generator), torch.randn(1024, 512, generator=generator))
    with recorded() as recording:
        out = torch.mm(a, b)
    gemms = [e for e in Census.from_verbose(recording.text, None).entries if e.gemm]
    ran = ", ".join(f"{e.library}:{e.kernel} {e.dtype}" for e in gemms) or "no library kernel"
    if not gemms or any(e.library != "onednn" or e.dtype != "f32" for e in gemms):
        return f"a fp32 matmul ran {ran}, not oneDNN on f32 data"
    exact = a.double() @ b.double()
    error = ((out.double() - exact).abs().max() / exact.abs().max()).item()
    if error > EXACT:
        return f"a fp32 matmul through oneDNN ({ran}) is off by {error:.1e} relative, not fp32 math"
    return None


def settle(route: Route, mode: PrecisionMode) -> Route:
    """Apply the route in this worker (after the ISA ceiling probe, whose headers it would take);
    the route that holds, printed."""
    if route.library == "onednn" and mode.fp32_math == "ieee":
        if not fp32_math.set_precision("bf16"):
            route = Route("mkl", f"torch {torch.__version__} has no torch.backends.mkldnn.matmul switch")
        elif problem := prove():
            fp32_math.set_precision("ieee")
            route = Route("mkl", f"the oneDNN route failed its proof: {problem}")
    print(f"fp32 GEMMs: {route.library} ({route.reason})", file=sys.stderr, flush=True)
    return route


def in_worker(requested: str, mode: PrecisionMode, amx_usable: bool, machine_key: str) -> Route:
    """Choose the route from this machine's stored roofline and settle it in this worker."""
    threads = torch.get_num_threads()
    # fp32's roofline decides for every fp32 mode: a capped mode's GEMMs are fp32's on a machine
    # without AMX, and two measurements of the same GEMMs, each within its noise, could route them
    # apart and make fp32 and avx-fp32 compute differently (compare measures each mode's peak)
    peak = lookup("fp32", machine_key, threads) or lookup(mode.name, machine_key, threads)
    return settle(choose(requested, mode, amx_usable, peak), mode)
