"""Read what oneDNN and MKL really do in a worker: their ceilings before training, and the kernels of
one real training step (harness.precision.census).

Both libraries write their verbose lines to the C stdout, so a recording points file descriptor 1
at a temporary file for its duration. Each prints its header (the ISA it settled on under the cap)
once per process, at its first call with verbose on: the ceiling probe makes one small call to
each, before any other, to read it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

import torch

from harness.precision import mkl_verbose, onednn_verbose


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
            libc.fflush(None)  # the libraries' printf output is buffered in libc, not in Python
            os.dup2(saved, 1)
            os.close(saved)


class Recording:
    """What the libraries printed inside `recorded()`; `text` is set when the block ends."""

    text: str = ""


@contextlib.contextmanager
def recorded() -> Iterator[Recording]:
    """Run the block with oneDNN's verbose (with execution times) and MKL's verbose on."""
    recording = Recording()
    with _captured_stdout_fd() as sink:
        with (
            torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON),
            torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON),
        ):
            yield recording
        sink.seek(0)
        recording.text = sink.read().decode(errors="replace")


def _record(work: Callable[[], None]) -> str:
    with recorded() as recording:
        work()
    return recording.text


def ceilings() -> tuple[str | None, str | None]:
    """(the ISA oneDNN allows itself under the cap, MKL's header ISA), from one tiny call to each."""
    # imported here, not at the top: its import warns that torch.jit.script_method is deprecated,
    # and only this probe, in the worker, needs it
    import torch.utils.mkldnn

    def one_call_each() -> None:
        with torch.no_grad():
            if torch.backends.mkldnn.is_available():
                torch.utils.mkldnn.to_mkldnn(torch.nn.Linear(16, 16))(torch.randn(4, 16).to_mkldnn())
            a = torch.randn(16, 16)
            torch.mm(a, a)  # fp32 GEMMs go to MKL in stock PyTorch

    text = _record(one_call_each)
    return onednn_verbose.parse(text).isa, mkl_verbose.parse(text)[0]
