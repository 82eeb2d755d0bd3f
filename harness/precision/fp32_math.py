"""The process-wide fp32 matmul precision, in one place for the modes, the GEMM route and LAMB.

torch 2.9 added `torch.backends.mkldnn.matmul.fp32_precision`. Earlier torch (IPEX's 2.8) has no
such switch, and its fp32 matmuls are IEEE fp32: every reader and writer here goes through
`switch()`, so that the harness runs on both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def switch() -> Any | None:
    """torch.backends.mkldnn.matmul, or None on torch before 2.9."""
    return getattr(torch.backends.mkldnn, "matmul", None)


def current() -> str:
    """The fp32 matmul precision in force: "ieee" where torch has no switch."""
    matmul = switch()
    return "ieee" if matmul is None else matmul.fp32_precision


def set_precision(value: str) -> bool:
    """Set the fp32 matmul precision; False (and nothing set) where torch has no switch."""
    matmul = switch()
    if matmul is None:
        return False
    matmul.fp32_precision = value
    return True


@contextlib.contextmanager
def ieee() -> Iterator[None]:
    """IEEE fp32 matmuls inside the block, whatever was set before; a no-op without the switch."""
    before = current()
    set_precision("ieee")
    try:
        yield
    finally:
        set_precision(before)
