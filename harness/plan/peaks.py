"""MFU on every report: before its plan, `harness compare` measures the matmul peak of each of its
modes that this machine has none stored for (harness.precision.roofline), at the thread count its
workers will run at, each mode in its own worker as `harness roofline` does. The store keeps the
peaks: a later compare on the same machine, threads and torch finds them and measures nothing.

A mode emulated here (bf16 without bf16 instructions, run with --allow-emulation) gets no peak: a
utilisation of an emulation says nothing of the hardware, and its matmul is slow enough (about 1
GFLOP/s for bf16 on an AVX2-only Zen 3) that the default 4096^3 peak would take half an hour before
the plan's first run. Its runs report no MFU. `harness roofline --allow-emulation` still measures it.
"""

from __future__ import annotations

import sys
import time

from harness.bench.roofline import run_all
from harness.errors import HarnessError
from harness.launch.launchers import LaunchOptions
from harness.machine.cores import resolve_cores, split_cores
from harness.machine.platform import detect
from harness.precision import roofline
from harness.precision.modes import admit, get_precision

REPEATS = 10
"""Timed matmuls per path, as `harness roofline`'s default."""


def worker_cores(options: LaunchOptions) -> list[int]:
    """The cores of one worker of the plan's runs: every core, or one instance's or rank's share."""
    cores = resolve_cores(options.cores)
    workers = options.instances * options.layout.nproc_per_node
    return split_cores(cores, workers)[0] if workers > 1 else cores


def unmeasured(names: list[str], options: LaunchOptions) -> tuple[list[str], list[int], list[str]]:
    """The modes the plan runs natively here whose peak (or stream bandwidth) the store lacks for
    its workers' cores, those cores, and the modes it runs emulated (no peak measured)."""
    platform = detect()
    cores = worker_cores(options)
    key = platform.key()
    todo, emulated = [], []
    for name in names:
        admission = admit(get_precision(name), platform)
        if not admission.runs(options.allow_emulation):
            continue
        if admission.emulated:
            emulated.append(name)
            continue
        peak = roofline.lookup(name, key, len(cores))
        # a peak stored before the stream bandwidth was measured beside it gives no speed of light
        if peak is None or "stream_gbytes_per_s" not in peak:
            todo.append(name)
    return todo, cores, emulated


def measure_unmeasured(names: list[str], options: LaunchOptions, size: int) -> None:
    """Measure and store the missing peaks, saying which and how long they took. A measurement
    that fails leaves those runs without MFU, not the comparison without runs."""
    todo, cores, emulated = unmeasured(names, options)
    if emulated:
        print(
            f"[roofline] {', '.join(emulated)} emulated here: no matmul peak measured, "
            "its runs report no MFU",
            file=sys.stderr,
            flush=True,
        )
    if not todo:
        return
    print(
        f"[roofline] no matmul peak stored for {', '.join(todo)} on this machine at {len(cores)} "
        "threads: measuring it before the plan, each mode in its own worker",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    try:
        run_all(todo, size, REPEATS, options.allow_emulation, ",".join(map(str, cores)))
    except HarnessError as exc:
        print(f"[roofline] not measured ({exc}): these runs report no MFU", file=sys.stderr, flush=True)
        return
    print(
        f"[roofline] {', '.join(todo)}: measured in {time.perf_counter() - start:.0f} s, stored for "
        "later compares on this machine",
        file=sys.stderr,
        flush=True,
    )
