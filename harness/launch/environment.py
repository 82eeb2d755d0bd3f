"""The environment a worker starts with: the mode's ISA variables, threads, allocator.

The parent never changes its own environment: the cap variables must be in place before the
worker's oneDNN initialises, which only a fresh process guarantees.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.precision.modes import PrecisionMode

ISA_ENV_VARS = (
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "OMP_NUM_THREADS",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "KMP_AFFINITY",
    "HARNESS_KERNEL_MARCH",
)
"""What decides the kernels and threads a worker runs (the libraries' ISA caps, the threads, the
-march the fused kernels were built for where not the host's); the run's result records them."""

RETAINED_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(1 << 36),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),
}
"""glibc malloc settings under which freed memory stays in the process. By default glibc maps every
block over 128 KiB (adaptively up to 32 MiB) on its own and unmaps it when freed, and trims the heap
top: a training step then faults its activations and gradients into fresh zeroed pages, every step
(docs/results.md#allocator gives the cost). Intel's scripts get the same effect by preloading jemalloc or
tcmalloc."""

MALLOC_ENV_VARS = (*RETAINED_MALLOC, "GLIBC_TUNABLES", "LD_PRELOAD")
"""What decides the worker's allocator; the run's result records them."""


def restart_with_retained_malloc() -> None:
    """Start this script again with RETAINED_MALLOC where its environment lacks it, as a worker
    would have it: glibc reads the variables at start only, and without them each timed step
    faults its tensors into fresh pages. For the benchmark scripts that time steps in-process."""
    if any(os.environ.get(k) != v for k, v in RETAINED_MALLOC.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **RETAINED_MALLOC})


def preloaded(maps: Path = Path("/proc/self/maps")) -> list[dict[str, str | bool | None]]:
    """Each library LD_PRELOAD names and whether this process has it mapped (`maps`: the process's
    memory map). ld.so skips a library it cannot load, saying so only on stderr: the variable
    alone would record jemalloc for a run that ran glibc malloc."""
    names = os.environ.get("LD_PRELOAD", "").replace(":", " ").split()
    if not names:
        return []
    # "address perms offset dev inode path": the path, if any, is the sixth field
    mapped = {
        Path(f[5]) for f in (line.split(maxsplit=5) for line in maps.read_text().splitlines()) if len(f) > 5
    }
    entries: list[dict[str, str | bool | None]] = []
    for name in names:
        # a path is mapped under its real path; a bare name is found by ld.so on its search path,
        # often as a versioned file (libjemalloc.so -> libjemalloc.so.2)
        if "/" in name:
            real = Path(os.path.realpath(name))
            found = real if real in mapped else None
        else:
            found = next((m for m in sorted(mapped) if m.name == name or m.name.startswith(f"{name}.")), None)
        note = None if found else "not mapped in the worker: ld.so ignored it (missing, or not loadable)"
        entries.append(
            {
                "library": name,
                "loaded": found is not None,
                "mapped": str(found) if found else None,
                "note": note,
            }
        )
    return entries


def worker_environment(mode: PrecisionMode, threads: int, system_malloc: bool = False) -> dict[str, str]:
    """The worker's environment: ours, plus the mode's ISA variables, the thread settings, and
    (unless system_malloc, or the caller set its own) malloc settings that keep freed memory."""
    # Inherited oneDNN and MKL settings would change what the mode means (a parent's
    # ONEDNN_DEFAULT_FPMATH_MODE=BF16 turns fp32 into bf32; ONEDNN_VERBOSE floods stdout): the
    # worker gets the mode's and nothing else.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEDNN_", "DNNL_", "MKL_"))}
    env.update(mode.environment())
    env.update(
        {
            "OMP_NUM_THREADS": str(threads),
            # One thread per core, packed: GNU OpenMP (the PyTorch wheel's) reads OMP_PROC_BIND and
            # OMP_PLACES; Intel's OpenMP, where it replaces it, reads KMP_AFFINITY.
            "OMP_PROC_BIND": "close",
            "OMP_PLACES": "cores",
            "KMP_AFFINITY": "granularity=fine,compact,1,0",
        }
    )
    if not system_malloc:
        for name, value in RETAINED_MALLOC.items():
            env.setdefault(name, value)
    return env


def environment_problem(mode: PrecisionMode) -> dict[str, str | None]:
    """The mode's variables this process did not start with (empty: it did)."""
    return {k: os.environ.get(k) for k, v in mode.environment().items() if os.environ.get(k) != v}
