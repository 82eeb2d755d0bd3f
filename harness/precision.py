"""Precision modes: how a run computes (autocast dtype). A mode is data, looked up by name."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from harness.errors import HarnessError


@dataclass(frozen=True)
class PrecisionMode:
    """One way of running the same training step."""

    name: str
    """What users type after --precision."""
    autocast_dtype: torch.dtype | None
    """Lower-precision dtype for torch.autocast("cpu"); None runs everything in fp32."""
    description: str
    """One line for help texts and reports."""

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=self.autocast_dtype)


PRECISIONS: dict[str, PrecisionMode] = {
    "fp32": PrecisionMode("fp32", None, "fp32 weights, activations and math"),
    "bf16": PrecisionMode("bf16", torch.bfloat16,
                          "bf16 autocast (matmuls in bf16), fp32 master weights and optimizer"),
}


def get_precision(name: str) -> PrecisionMode:
    try:
        return PRECISIONS[name]
    except KeyError:
        raise HarnessError(f"--precision {name}: unknown mode (known: {', '.join(PRECISIONS)})") from None
