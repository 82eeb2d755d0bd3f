"""The contention sentinel: did a run get its cores, or did it share them?

Two readings over the timed steps of a run:
- per step, `cpu_share`: the CPU time the training process got (all its threads) over wall time x
  threads. It falls when a neighbour takes the cores, but also in the step's own serial parts,
  so it describes a step and judges nothing;
- per run, from /proc/stat, the time the run's cores spent on anything but this run's process
  tree (the training process and its data workers), and the time the hypervisor stole from them.
  What is left is `cpu_available`, the share of the cores the run really had; a run under the
  threshold is `contended`, and its throughput is no evidence of the code's speed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CONTENTION_THRESHOLD = 0.9
"""Default: a run that had less than this share of its cores is contended."""

_TICK = os.sysconf("SC_CLK_TCK")


def _core_ticks(cores: list[int]) -> tuple[int, int]:
    """(busy, steal) clock ticks of these CPUs since boot, from /proc/stat."""
    busy = steal = 0
    wanted = {f"cpu{c}" for c in cores}
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            values = [int(v) for v in fields[1:9]]
            busy += values[0] + values[1] + values[2] + values[5] + values[6]
            steal += values[7]
    return busy, steal


def _process_ticks(pid: int) -> int:
    """utime + stime of one process (all its threads), in clock ticks; 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    return int(fields[11]) + int(fields[12])


def _tree_ticks(root: int) -> int:
    """CPU ticks of a process and all its descendants (the data loader's workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _process_ticks(pid)
        todo.extend(children.get(pid, []))
    return total


@dataclass(frozen=True)
class Snapshot:
    wall_s: float
    busy: int
    steal: int
    ours: int

    @classmethod
    def take(cls, cores: Sequence[int]) -> Snapshot:
        busy, steal = _core_ticks(list(cores))
        return cls(time.perf_counter(), busy, steal, _tree_ticks(os.getpid()))


def judge(start: Snapshot, end: Snapshot, cores: int, threshold: float) -> dict:
    """What the run's result records of its cores between two snapshots."""
    capacity = (end.wall_s - start.wall_s) * cores * _TICK
    if capacity <= 0:
        return {}
    others = max(0, (end.busy - start.busy) - (end.ours - start.ours)) / capacity
    steal = (end.steal - start.steal) / capacity
    available = max(0.0, 1.0 - others - steal)
    return {
        "cpu_available": available,
        "cpu_others_share": others,
        "cpu_steal_share": steal,
        "contention_threshold": threshold,
        "contended": available < threshold,
    }
