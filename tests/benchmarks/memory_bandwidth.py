"""The memory bandwidth an optimizer step can stream at, in the harness's worker settings.

    python tests/benchmarks/memory_bandwidth.py [--mib 256] [--repeats 10]

Each pass runs over fp32 tensors far larger than the caches, as LAMB's passes over BERT-Large's
weights, moments and gradients do, in a process started with the fp32 mode's worker environment
(threads, core binding, the allocator's settings). A pass's bytes (read + written) divided by its
median time bounds what any optimizer's pass over the same bytes can take.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

PASSES = ("read", "copy", "triad", "update")


def _measure(mib: int, repeats: int) -> None:
    import torch

    n = mib * 2**20 // 4
    a, b, c = torch.ones(n), torch.ones(n), torch.ones(n)
    work = {
        "read": (lambda: torch.dot(a, b), 8),  # bytes per element: a and b read
        "copy": (lambda: c.copy_(a), 8),
        "triad": (lambda: torch.add(a, b, alpha=2.0, out=c), 12),
        "update": (lambda: a.add_(b, alpha=2.0), 12),  # the in-place step p += s * u
    }
    print(f"{torch.get_num_threads()} threads, fp32 tensors of {mib} MiB, median of {repeats}")
    for name in PASSES:
        fn, per_element = work[name]
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        times.sort()
        gbs = [per_element * n / t / 1e9 for t in (times[len(times) // 2], times[-1], times[0])]
        print(f"{name:<7} {gbs[0]:6.1f} GB/s  (slowest {gbs[1]:.1f}, fastest {gbs[2]:.1f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="size of each tensor (default 256 MiB)")
    parser.add_argument("--repeats", type=int, default=10, help="timed passes of each kind (default 10)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _measure(args.mib, args.repeats)
        return 0
    from harness.launch.environment import worker_environment
    from harness.machine.cores import default_cores
    from harness.precision.modes import get_precision

    cores = default_cores()
    env = worker_environment(get_precision("fp32"), len(cores))
    command = [sys.executable, __file__, "--worker", "--mib", str(args.mib), "--repeats", str(args.repeats)]
    return subprocess.run(command, env=env, preexec_fn=lambda: os.sched_setaffinity(0, cores)).returncode


if __name__ == "__main__":
    sys.exit(main())
