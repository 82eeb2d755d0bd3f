"""`harness roofline`, the parent's side: one worker per mode times its matmul peak, a table of
every path, and the peaks added to the store (harness.precision.roofline)."""

from __future__ import annotations

import sys

from harness.errors import HarnessError
from harness.launch import launchers
from harness.launch.admission import context_for
from harness.launch.job import Job, WorkerContext, write_figures
from harness.machine import platform as machine
from harness.machine.cores import resolve_cores
from harness.precision import matmul_peak, roofline
from harness.precision.modes import admit, get_precision


def measure_roofline(job: Job, context: WorkerContext) -> int:
    """The roofline task, in its worker: the mode's matmul peak through every path."""
    return write_figures(job, matmul_peak.measure(job.mode, **job.settings))


def run_all(names: list[str], size: int, repeats: int, allow_emulation: bool, cores_spec: str | None) -> int:
    """Parent: one worker per mode, a table, and the store updated."""
    roofline.writable_store()  # before measuring: a store that cannot be written would lose the peaks
    platform = machine.detect()
    cores = resolve_cores(cores_spec)
    peaks, skipped = {}, []
    for name in names:
        mode = get_precision(name)
        admission = admit(mode, platform)
        if not admission.runs(allow_emulation):
            skipped.append(f"{name} ({admission.reason})")
            continue
        context = context_for(mode, platform, cores)
        settings = {"size": size, "repeats": repeats}
        measured = launchers.run_task(measure_roofline, mode, context, settings, False)
        peaks[name] = {**measured, "emulated": admission.emulated}
        print(
            f"{name}: {peaks[name]['gflops']:.1f} GFLOP/s ({peaks[name]['library']})",
            file=sys.stderr,
            flush=True,
        )
    if not peaks:
        raise HarnessError(f"no mode could run here: {'; '.join(skipped)}")
    print(
        f"\nmatmul roofline, {size}x{size}x{size}, median of {repeats}, {len(cores)} threads, "
        f"{platform.cpu_model} (family {platform.family} model {platform.model})"
    )
    print("\n".join(table(peaks)))
    for line in skipped:
        print(f"skipped: {line}")
    # Saved after the table is printed: a store that cannot be written loses no figures.
    print(f"stored in {roofline.save(platform.key(), peaks)}")
    return 0


def table(peaks: dict[str, dict]) -> list[str]:
    """A line per mode and path, then what each mode's MFU divides by and its stream bandwidth."""
    lines = [f"{'mode':<10} {'dtype':<9} {'path':<14} {'library':<8} {'GFLOP/s':>9} {'p10..p90':>17}  kernel"]
    for name, peak in peaks.items():
        for p in peak["paths"]:
            if "gflops" not in p:
                lines.append(
                    f"{name:<10} {peak['dtype']:<9} {p['path']:<14} {'-':<8} {'-':>9} {'':>17}  "
                    f"unavailable: {p['unavailable']}"
                )
                continue
            spread = f"{p['gflops_p10']:>8.1f}..{p['gflops_p90']:<8.1f}"
            lines.append(
                f"{name:<10} {peak['dtype']:<9} {p['path']:<14} {p['library']:<8} {p['gflops']:>9.1f} "
                f"{spread}  {p['kernel']}"
            )
        note = "; emulated: the CPU has no instructions for its number format" if peak["emulated"] else ""
        lines.append(
            f"  {name}: MFU divides by {peak['gflops']:.1f} GFLOP/s, {peak['path']} ({peak['library']}){note}"
        )
        lines.append(
            f"  {name}: the optimizer streams at {peak['stream_gbytes_per_s']:.1f} GB/s (speed of light)"
        )
    return lines
