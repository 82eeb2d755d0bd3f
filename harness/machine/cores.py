"""Which CPUs a run may use, and how they are shared between ranks and instances."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError


def parse_cores(spec: str) -> list[int]:
    """ "0-3,8" -> [0, 1, 2, 3, 8]; each CPU must be one this process may run on."""
    if not spec.strip():  # not the default: a user who meant it leaves the flag out
        raise HarnessError("--cores is empty: expected a list like 0-3,8 (or no --cores for the default)")
    cores: list[int] = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
            if first > last:
                raise HarnessError(f"--cores {spec}: the range {part} runs backwards; expected LOW-HIGH")
            cores.extend(range(first, last + 1))
    except ValueError:
        raise HarnessError(f"--cores {spec}: expected a list like 0-3,8") from None
    allowed = os.sched_getaffinity(0)
    outside = sorted(set(cores) - allowed)
    if outside:
        raise HarnessError(f"--cores {spec}: CPUs {outside} are not available (allowed: {sorted(allowed)})")
    return sorted(set(cores))


def default_cores() -> list[int]:
    """One logical CPU per physical core of the first socket this process may use."""
    chosen: dict[tuple[str, str], int] = {}
    for cpu in sorted(os.sched_getaffinity(0)):
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            key = ((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip())
        except OSError:
            key = ("0", str(cpu))
        chosen.setdefault(key, cpu)
    first_socket = min(pkg for pkg, _ in chosen)
    return sorted(cpu for (pkg, _), cpu in chosen.items() if pkg == first_socket)


def resolve_cores(spec: str | None) -> list[int]:
    """--cores SPEC, or the default: every physical core of the first socket."""
    return default_cores() if spec is None else parse_cores(spec)


def split_cores(cores: Sequence[int], k: int) -> list[list[int]]:
    """K equal, disjoint, consecutive sets (instances); the remainder stays unused."""
    if k < 1 or k > len(cores):
        raise HarnessError(
            f"--instances {k}: expected 1 .. {len(cores)}, one core at least per instance "
            f"(cores: {','.join(map(str, cores))})"
        )
    per = len(cores) // k
    return [list(cores[i * per : (i + 1) * per]) for i in range(k)]


def rank_cores(cores: Sequence[int], local_rank: int, local_world_size: int) -> list[int]:
    """Consecutive, equal, disjoint slices of the node's cores, one per local rank."""
    per_rank = len(cores) // local_world_size
    if per_rank == 0:
        raise HarnessError(
            f"--nproc-per-node {local_world_size} exceeds the {len(cores)} cores "
            f"this run may use ({list(cores)}); choose at most {len(cores)}"
        )
    return list(cores[local_rank * per_rank : (local_rank + 1) * per_rank])
