"""How the model and optimizer are prepared: stock PyTorch, our fused kernels, or Intel's
extension (IPEX).

fused keeps the model and its GEMMs (oneDNN/MKL through ATen, so the kernel census still proves
the ISA) and runs the work around them in kernels of our own (harness.kernels), compiled for this
CPU on first use: LAMB, and dropout + residual + LayerNorm after the attention output and FFN
GEMMs.

intel-extension-for-pytorch is archived upstream and its last release (2.8) requires torch
2.8.*, while the harness pins torch 2.13.0: IPEX is an option a user installs into its own
environment, never a requirement. Each run records the backend it used, and `compare
--backends stock,ipex` compares backends as it compares precisions.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterable
from typing import TYPE_CHECKING

from harness import kernels
from harness.errors import HarnessError

if TYPE_CHECKING:  # the parent checks a backend before any worker starts, without loading torch
    import torch

    from harness.models.lamb import Lamb

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


def full_precision(optimizer: torch.optim.Optimizer) -> contextlib.AbstractContextManager:
    """While the block runs, the model holds its fp32 weights (the masters of the fused backend's
    bf16 copies): what a checkpoint saves and phase 2 starts from."""
    from harness.kernels.lamb import FusedLamb

    return optimizer.full_precision() if isinstance(optimizer, FusedLamb) else contextlib.nullcontext()


def build(backends: Iterable[str], machine_key: str) -> None:
    """Before a plan's first run: compile the kernels the backends need, so that no run's steps
    pay for the build (a worker then loads it from the cache)."""
    if "fused" in backends:
        kernels.load(machine_key)


def prepare(
    backend: str,
    model: torch.nn.Module,
    optimizer: Lamb,
    autocast: str | None,
    machine_key: str,
    distributed: bool = False,
) -> tuple[torch.nn.Module, torch.optim.Optimizer, dict]:
    """The model and optimizer to train with, and what to record about the backend. fused under
    bf16 autocast holds the Linear layers' weights in bf16 copies its optimizer writes, except
    with several ranks: DDP would then average the gradients in bf16."""
    import torch

    if backend == "stock":
        return model, optimizer, {"backend": "stock", "backend_version": torch.__version__}
    check_available(backend)
    if next(model.parameters()).dtype != torch.float32:
        raise HarnessError(
            f"--backend {backend}: it keeps fp32 master weights, so a mode with bf16 weights "
            "runs on the stock backend only"
        )
    if backend == "fused":
        from harness.kernels.lamb import FusedLamb
        from harness.kernels.layers import fuse

        ops = kernels.load(machine_key)
        fuse(model, ops)
        fused = FusedLamb.like(optimizer, ops)
        split = autocast == "bfloat16" and not distributed
        if split:
            fused.hold_in_bf16(
                p for m in model.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters()
            )
        return (
            model,
            fused,
            {
                "backend": "fused",
                "backend_version": kernels.build_key(machine_key),
                "bf16_weights": split,
            },
        )
    from harness.train import ipex_backend

    return ipex_backend.prepare(model, optimizer, autocast)
