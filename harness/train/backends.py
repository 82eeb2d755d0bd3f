"""The backends a run's model and optimizer are prepared on: stock PyTorch, our fused kernels, or
Intel's extension (IPEX).

fused keeps the model and its GEMMs (oneDNN/MKL through ATen, so the kernel census still proves
the ISA) and runs the work around them in kernels of our own (harness.kernels), compiled for this
CPU on first use: LAMB, and dropout + residual + LayerNorm after the attention output and FFN
GEMMs.

intel-extension-for-pytorch is archived upstream and its last release (2.8) requires torch
2.8.*, while the harness pins torch 2.13.0: IPEX is an option a user installs into its own
environment, never a requirement. Each run records the backend it used, and `compare
--backends stock,ipex` compares backends as it compares precisions.

This module is the parent process's side: the names, the check and the build, before any worker
starts, without loading torch. A worker prepares its model and optimizer on the backend with
harness.train.prepare_backend.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import TYPE_CHECKING

from harness import kernels
from harness.errors import HarnessError

if TYPE_CHECKING:  # precision.modes loads torch
    from harness.precision.modes import PrecisionMode

BACKENDS = ("stock", "fused", "ipex")
IPEX_MODULE = "intel_extension_for_pytorch"
INSTALL_IPEX = (
    "pip install 'torch==2.8.*' 'intel-extension-for-pytorch==2.8.*' in an environment of "
    "its own (IPEX 2.8 needs torch 2.8), then pip install --no-deps -e . and the other dependencies "
    "there: docs/ipex.md"
)


def check_available(backend: str, flag: str = "--backend") -> None:
    """Before any work: refuse a backend whose package this Python cannot import; `flag`: the
    flag that named it (compare's --backends)."""
    if backend not in BACKENDS:
        raise HarnessError(f"{flag} {backend}: expected one of {', '.join(BACKENDS)}")
    if backend == "ipex" and importlib.util.find_spec(IPEX_MODULE) is None:
        raise HarnessError(f"{flag} ipex: intel-extension-for-pytorch is not installed; {INSTALL_IPEX}")
    if backend == "fused":
        kernels.compiler()


def mode_problem(backend: str, mode: PrecisionMode) -> str | None:
    """Why `backend` cannot run `mode`, or None. fused and ipex keep fp32 master weights, so a mode
    with bf16 weights (bf16-pure) runs on stock only: the plan's `auto` sends it there, `train`
    refuses it before a worker starts, and the worker checks again before it prepares the model."""
    if backend != "stock" and mode.weights is not None:
        return (
            f"--backend {backend}: it keeps fp32 master weights, so mode {mode.name} "
            f"({mode.weights} weights) runs on the stock backend only"
        )
    return None


def build(backends: Iterable[str], machine_key: str) -> None:
    """Before a plan's first run: compile the kernels the backends need, so that no run's steps
    pay for the build (a worker then loads it from the cache)."""
    if "fused" in backends:
        kernels.build(machine_key)
