"""Start a worker process with a precision mode's environment, bound to its cores.

The parent never changes its own environment: the cap variables must be in place before the
worker's oneDNN initialises, which only a fresh process guarantees. SIGINT and SIGTERM are
passed on to the worker, which finishes its step, checkpoints and exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.precision import PrecisionMode

if TYPE_CHECKING:
    from harness.platform import Platform

CONTEXT_ENV = "HARNESS_WORKER_CONTEXT"
"""What the parent learnt before starting the worker (JSON): parent_context's fields and the cores."""


def parent_context(mode: PrecisionMode, platform: Platform) -> dict:
    """What the parent tells the mode's worker about this machine: how the mode is admitted here
    (harness.precision.admit: emulated only where the caller allowed it), the ISA its GEMMs must
    run on, and the machine's fingerprint key. Warns, on stderr, of emulated low-precision GEMMs
    without AVX-512: there PyTorch falls back to a scalar bf16 kernel for some layouts
    (pytorch/pytorch#146508), so a BERT-Large step takes many minutes."""
    from harness.platform import as_dict, fingerprint_key
    from harness.precision import admit

    admission = admit(mode, platform)
    if admission.emulated and not platform.avx512 and (mode.autocast or mode.fp32_math != "ieee"):
        print(
            f"warning: {mode.name} is emulated on a CPU without AVX-512: PyTorch's "
            f"{mode.autocast or mode.fp32_math} GEMMs run a scalar fallback here, orders of magnitude "
            "slower than fp32; fine for a tiny model, hours for BERT-Large",
            file=sys.stderr,
            flush=True,
        )
    return {
        "emulated": admission.emulated,
        "missing_features": list(admission.missing),
        "gemm_isa": admission.gemm_isa,
        "amx_usable": platform.amx_usable,
        "cpu_model": platform.cpu_model,
        "machine_key": fingerprint_key(as_dict(platform)),
    }


def admitted_context(mode: PrecisionMode, platform: Platform, allow_emulation: bool, flag: str) -> dict:
    """parent_context for a mode that may run here; refuses (one line naming `flag`) a mode that
    would compute something else here, or an emulated one unless allow_emulation."""
    from harness.precision import admit

    admission = admit(mode, platform)
    if admission.status == "refused" or (admission.emulated and not allow_emulation):
        hint = "; --allow-emulation runs it anyway, marked emulated" if admission.emulated else ""
        raise HarnessError(f"{flag} {mode.name}: {admission.reason} ({platform.cpu_model}){hint}")
    return parent_context(mode, platform)


def worker_context(mode: PrecisionMode) -> dict:
    """What the parent passed (harness.launch); refuses to train without the mode's environment."""
    raw = os.environ.get(CONTEXT_ENV)
    wrong = {k: os.environ.get(k) for k, v in mode.environment().items() if os.environ.get(k) != v}
    if raw is None or wrong:
        raise HarnessError(
            f"--worker: this process did not start with the environment of mode "
            f"{mode.name} ({wrong or CONTEXT_ENV + ' missing'}); run `harness train` "
            "without --worker"
        )
    return json.loads(raw)


def parse_cores(spec: str) -> list[int]:
    """ "0-3,8" -> [0, 1, 2, 3, 8]; each CPU must be one this process may run on."""
    cores: list[int] = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            cores.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise HarnessError(f"--cores {spec}: expected a list like 0-3,8") from None
    allowed = os.sched_getaffinity(0)
    outside = sorted(set(cores) - allowed)
    if not cores or outside:
        raise HarnessError(
            f"--cores {spec}: CPUs {outside or 'none'} are not available (allowed: {sorted(allowed)})"
        )
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


RETAINED_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(1 << 36),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),
}
"""glibc malloc settings under which freed memory stays in the process. By default glibc maps every
block over 128 KiB (adaptively up to 32 MiB) on its own and unmaps it when freed, and trims the heap
top: a training step then faults its activations and gradients into fresh zeroed pages, every step.
On BERT-Large (batch 8 x seq 128, 2 cores) that was 150 k page faults (600 MB) a step and made the
FFN GEMMs run at 0.16 instead of 0.26 TFLOP/s; with these two, 34 k faults and a 10% faster step
at the same peak RSS. Intel's scripts get the same effect by preloading jemalloc or tcmalloc."""

MALLOC_ENV_VARS = (*RETAINED_MALLOC, "GLIBC_TUNABLES", "LD_PRELOAD")
"""What decides the worker's allocator; the run's result records them."""


def worker_environment(
    mode: PrecisionMode, cores: Sequence[int], context: dict, system_malloc: bool = False
) -> dict[str, str]:
    """The worker's environment: ours, plus the mode's ISA variables, the thread settings, and
    (unless system_malloc, or the caller set its own) malloc settings that keep freed memory."""
    # Inherited oneDNN and MKL settings would change what the mode means (a parent's
    # ONEDNN_DEFAULT_FPMATH_MODE=BF16 turns fp32 into bf32; ONEDNN_VERBOSE floods stdout): the
    # worker gets the mode's and nothing else.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEDNN_", "DNNL_", "MKL_"))}
    env.update(mode.environment())
    env[CONTEXT_ENV] = json.dumps({**context, "cores": list(cores)})
    env.update(
        {
            "OMP_NUM_THREADS": str(len(cores)),
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


@dataclass(frozen=True)
class RankLayout:
    """How many training processes, on how many nodes, and how they meet (torchrun's flags)."""

    nproc_per_node: int = 1
    """Ranks on this node; each gets an equal, disjoint share of the run's cores."""
    nnodes: int = 1
    """Nodes; every node runs the same `harness train` with its own --node-rank."""
    node_rank: int | None = None
    """This node's rank (0 .. nnodes-1), with --master-addr: static rendezvous."""
    master_addr: str | None = None
    master_port: int = 29500
    rdzv_endpoint: str | None = None
    """HOST:PORT of a c10d rendezvous, instead of --node-rank and --master-addr."""
    rdzv_id: str = "harness"

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def validate(self) -> None:
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise HarnessError("--nproc-per-node and --nnodes must be >= 1")
        static = self.master_addr is not None and self.node_rank is not None
        if self.nnodes > 1 and not self.rdzv_endpoint and not static:
            raise HarnessError(
                f"--nnodes {self.nnodes}: give --rdzv-endpoint HOST:PORT, or --master-addr "
                "and --node-rank, so that the nodes can find each other"
            )
        if self.node_rank is not None and not 0 <= self.node_rank < self.nnodes:
            raise HarnessError(f"--node-rank {self.node_rank}: expected 0 .. {self.nnodes - 1}")

    def torchrun(self, argv: Sequence[str]) -> list[str]:
        """The torch.distributed.run command that starts every local rank through rank_launch."""
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={self.nproc_per_node}",
            f"--nnodes={self.nnodes}",
        ]
        if self.nnodes == 1 and not self.rdzv_endpoint:
            cmd.append("--standalone")  # a free local port, no rendezvous server to name
        elif self.rdzv_endpoint:
            cmd += [
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint={self.rdzv_endpoint}",
                f"--rdzv-id={self.rdzv_id}",
            ]
        else:
            cmd += [
                f"--node-rank={self.node_rank}",
                f"--master-addr={self.master_addr}",
                f"--master-port={self.master_port}",
            ]
        return [*cmd, "-m", "harness.rank_launch", *argv]


def run_worker(
    argv: Sequence[str], env: dict[str, str], cores: Sequence[int], ranks: RankLayout | None = None
) -> int:
    """Run `python -m harness <argv>` as a child bound to `cores` (through torchrun, once per
    rank, when `ranks` asks for more than one process); returns its exit code."""
    if ranks is not None and (ranks.world_size > 1 or ranks.rdzv_endpoint):
        return _run(ranks.torchrun(argv), env, cores, capture=False)[0]
    return _run([sys.executable, "-m", "harness", *argv], env, cores, capture=False)[0]


def run_worker_capture(argv: Sequence[str], env: dict[str, str], cores: Sequence[int]) -> tuple[int, str]:
    """Like run_worker, and returns what the worker printed on stdout."""
    return _run([sys.executable, "-m", "harness", *argv], env, cores, capture=True)


def _run(command: list[str], env: dict[str, str], cores: Sequence[int], capture: bool) -> tuple[int, str]:
    child = subprocess.Popen(
        command,
        env=env,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
    )

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        out = child.communicate()[0] if capture else ""
        code = child.wait()
        # Killed by signal N: report it the way a shell does (128 + N), not as a negative number.
        return (128 - code if code < 0 else code), out or ""
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
