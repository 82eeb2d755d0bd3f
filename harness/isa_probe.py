"""Prove which ISA a worker really runs on: a short probe with oneDNN verbose on, parsed.

The probe runs a bf16 and an fp32 linear layer, forward and backward, under the mode's autocast
and fp32 math setting, before any timed step. oneDNN writes its verbose lines to the C stdout,
so the probe points file descriptor 1 at a temporary file for its duration.

Where the CPU lacks AVX-512, stock PyTorch runs neither of those layers in oneDNN (fp32 GEMMs go
to MKL, bf16 ones to its own kernels), so oneDNN prints nothing at all. The probe then calls oneDNN
directly once, to read the ISA it allows itself under the cap; that call's kernel is not the
workload's and is not listed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from harness.onednn_verbose import VerboseReport, parse
from harness.precision import PrecisionMode


@contextlib.contextmanager
def _captured_stdout_fd() -> Iterator[tempfile._TemporaryFileWrapper]:
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(1)
        os.dup2(sink.fileno(), 1)
        try:
            yield sink
        finally:
            libc.fflush(None)  # oneDNN's printf output is buffered in libc, not in Python
            os.dup2(saved, 1)
            os.close(saved)


def _verbose(work: Callable[[], None]) -> VerboseReport:
    """oneDNN's verbose report of what `work` ran."""
    import torch

    with _captured_stdout_fd() as sink:
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            work()
        sink.seek(0)
        text = sink.read().decode(errors="replace")
    return parse(text)


def probe(mode: PrecisionMode) -> VerboseReport:
    import torch
    import torch.utils.mkldnn

    def workload_layers() -> None:
        for dtype in (torch.bfloat16, torch.float32):
            layer = torch.nn.Linear(256, 256).to(dtype)
            x = torch.randn(64, 256, dtype=dtype, requires_grad=True)
            with mode.autocast_context():
                y = layer(x)
            y.float().sum().backward()

    def direct_onednn_call() -> None:
        with torch.no_grad():
            torch.utils.mkldnn.to_mkldnn(torch.nn.Linear(16, 16))(torch.randn(4, 16).to_mkldnn())

    report = _verbose(workload_layers)
    # oneDNN prints its ISA header once, when it first runs: if the workload never reached it,
    # only a call of our own can show the ceiling the cap left it.
    if report.isa is None and torch.backends.mkldnn.is_available():
        report.isa = _verbose(direct_onednn_call).isa
    return report


@dataclass
class IsaVerdict:
    """What result.json records about the ISA a run used."""

    isa_cap: str
    isa_verified: str | None
    kernels: list[str]
    amx_used: bool
    emulated: bool
    valid: bool
    invalid_reason: str | None

    @classmethod
    def judge(cls, mode: PrecisionMode, report: VerboseReport, amx_usable: bool,
              emulated: bool) -> IsaVerdict:
        reason = None
        if not report.kernels and report.isa is None:
            reason = ("oneDNN reported neither a kernel nor its ISA during the probe: the ISA cannot be "
                      "verified")
        elif mode.expects_amx is False and report.amx_used:
            reason = f"{mode.name} must stay off AMX but oneDNN ran {', '.join(report.kernels)}"
        elif mode.expects_amx is False and report.amx_allowed:
            reason = f"{mode.name} must stay off AMX but oneDNN allows itself {report.isa!r}"
        elif mode.expects_amx and amx_usable and not report.amx_used:
            reason = (f"{mode.name} must run on AMX, which this CPU offers, but oneDNN ran "
                      f"{', '.join(report.kernels) or 'no kernel'}")
        return cls(isa_cap=mode.isa_cap, isa_verified=report.isa, kernels=report.kernels,
                   amx_used=report.amx_used, emulated=emulated, valid=reason is None,
                   invalid_reason=reason)
