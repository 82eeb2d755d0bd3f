"""One step's GEMM time by library, kernel and shape, read from oneDNN's and MKL's verbose logs.

A step's MFU says how far it is from the roofline, not why. This splits the step in two: its
GEMMs, each shape at the rate it ran at, and everything else. A GEMM shape that runs below the
roofline in the step and below it standalone too is bounded by its shape, not by our code; time
outside the GEMMs is what a fusion or a cheaper optimizer could still win.

The same recorded step, read by the kernel census (harness.precision.census), also splits into
the parts a `harness train` run's census step splits into (harness.results.time_split).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from harness.bench.peer_steps import Step, StepParts
from harness.precision import mkl_verbose, onednn_verbose
from harness.precision.census import Census
from harness.precision.probe import ceilings, recorded
from harness.results.time_split import TimeSplit


@dataclass(frozen=True)
class GemmGroup:
    """The GEMM calls of one step that share a library, a kernel and a shape."""

    library: str
    """onednn or mkl."""
    kernel: str
    """oneDNN's implementation (`brg_matmul:avx512_core_bf16`) or MKL's function (`SGEMM`)."""
    shape: str
    """oneDNN's problem (`1024x1024:1024x4096`, batched: `128x128x64:128x64x128`) or MKL's M x N x K."""
    calls: int
    seconds: float
    flops: float | None
    """2 x M x N x K summed over the calls; None where the log gives no sizes (MKL's batched calls)."""

    @property
    def gflops_per_s(self) -> float | None:
        return self.flops / self.seconds / 1e9 if self.flops is not None and self.seconds > 0 else None


def groups(text: str) -> list[GemmGroup]:
    """Every GEMM the log timed, grouped by (library, kernel, shape), the costliest first."""
    found: dict[tuple[str, str, str], list[tuple[float, float | None]]] = {}
    for e in onednn_verbose.parse(text).executions:
        if e.is_gemm and e.time_ms is not None:
            found.setdefault(("onednn", e.implementation, e.problem), []).append((e.time_ms, e.flops))
    for call in mkl_verbose.parse(text)[1]:
        if call.is_gemm:
            shape = "x".join(map(str, call.sizes)) if call.sizes is not None else "?"
            found.setdefault(("mkl", call.function, shape), []).append((call.time_ms, call.flops))
    out = []
    for (library, kernel, shape), calls in found.items():
        flops = [f for _, f in calls]
        out.append(
            GemmGroup(
                library=library,
                kernel=kernel,
                shape=shape,
                calls=len(calls),
                seconds=sum(t for t, _ in calls) / 1e3,
                flops=None if None in flops else float(sum(flops)),  # type: ignore[arg-type]
            )
        )
    return sorted(out, key=lambda g: g.seconds, reverse=True)


@dataclass(frozen=True)
class RecordedStep:
    """One step run with both verbose logs on: what the libraries printed, its wall time and its
    parts."""

    text: str
    step_s: float
    parts: StepParts
    onednn_header: str | None
    mkl_header: str | None
    """The ISA each library settled on: each prints it once per process, maybe before this step."""

    def gemm_groups(self) -> dict:
        """Its wall time and its GEMM groups (as dicts): what `bench peer --gemms` shows."""
        return {"step_s": self.step_s, "groups": [asdict(g) for g in groups(self.text)]}

    def time_split(self) -> TimeSplit:
        """Where its time went, as a run's census step splits: a bare step waits for no data."""
        census = Census.from_verbose(self.text, self.mkl_header, self.onednn_header)
        return TimeSplit.of_step(
            census.gemm_seconds(),
            self.step_s,
            data_s=0.0,
            forward_backward_s=self.parts.forward_backward_s,
            optimizer_s=self.parts.optimizer_s,
        )


def record_step(step: Step) -> RecordedStep:
    """Run one step with both verbose logs on, timed as a timed step is."""
    onednn_header, mkl_header = ceilings()
    with recorded() as recording:
        start = time.perf_counter()
        parts = step()
        wall = time.perf_counter() - start
    return RecordedStep(recording.text, wall, parts, onednn_header, mkl_header)


def summary(label: str, recorded_step: dict, roofline_gflops: float | None, top: int) -> list[str]:
    """The step's GEMM total against the roofline, the time outside them, then the costliest groups."""
    gs = [GemmGroup(**g) for g in recorded_step["groups"]]
    seconds = sum(g.seconds for g in gs)
    sized = [g for g in gs if g.flops is not None]
    flops = sum(g.flops for g in sized if g.flops is not None)
    sized_s = sum(g.seconds for g in sized)
    rate = flops / sized_s / 1e9 if sized_s > 0 else None
    head = f"GEMMs of one {label} step, verbose on: {seconds:.2f} s"
    if rate is not None:
        head += f", {flops / 1e9:.0f} GFLOP at {rate:.1f} GFLOP/s"
        if roofline_gflops:
            head += f" ({rate / roofline_gflops:.1%} of the roofline's {roofline_gflops:.1f})"
    if seconds > sized_s:
        head += f", {seconds - sized_s:.2f} s of it in calls the log gives no sizes for"
    step_s = recorded_step["step_s"]
    lines = [head + f"; the step took {step_s:.2f} s, {step_s - seconds:.2f} s of it outside its GEMMs"]
    for g in gs[:top]:
        speed = f"{g.gflops_per_s:7.1f} GFLOP/s" if g.gflops_per_s is not None else f"{'-':>15}"
        lines.append(
            f"  {g.seconds * 1e3:>9.1f} ms {g.calls:>5}x {speed}  {g.library:<6} {g.kernel:<30} {g.shape}"
        )
    return lines
