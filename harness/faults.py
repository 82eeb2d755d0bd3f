"""Fault injection for testing what the harness does when a run goes wrong.

`HARNESS_FAULT=KIND@STEP[:PRECISION[:PHASE]]` makes the training worker misbehave at that step:
`crash` exits the process abruptly (as an OOM kill would), `nan` turns the loss into NaN
(divergence), `hang` stops making progress, `slow` makes every step from STEP on take twice as
long (a regression of known size, far beyond the noise between processes), `amx` adds an AMX
kernel to the kernel census of a step from STEP on (a cap that did not hold). The optional precision
and phase limit it to those runs, so one run of a comparison can fail while the others go on.
Tests use it to exercise resume, divergence, time-out handling and the gate on real worker
processes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from harness.errors import HarnessError

KINDS = ("crash", "nan", "hang", "slow", "amx")
AMX_EXEC_LINE = (
    "onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx10_1_512_amx,undef,"
    "src:bf16::blocked:ab::f0 wei:bf16::blocked:ab::f0 dst:bf16::blocked:ab::f0,,,"
    "1024x1024:1024x4096,1.5\n"
)


@dataclass(frozen=True)
class Fault:
    kind: str
    step: int

    @classmethod
    def from_env(cls, precision: str, phase: int) -> Fault | None:
        """The fault meant for this run, if any."""
        spec = os.environ.get("HARNESS_FAULT", "")
        if not spec:
            return None
        kind, _, rest = spec.partition("@")
        step, *scope = rest.split(":")
        well_formed = (
            kind in KINDS and step.isdigit() and len(scope) <= 2 and (len(scope) < 2 or scope[1].isdigit())
        )
        if not well_formed:
            raise HarnessError(
                f"HARNESS_FAULT={spec}: expected KIND@STEP[:PRECISION[:PHASE]] with KIND "
                f"one of {', '.join(KINDS)}"
            )
        if (scope and scope[0] != precision) or (len(scope) == 2 and int(scope[1]) != phase):
            return None
        return cls(kind, int(step))

    def poison_loss(self, step: int, loss: float) -> float:
        """Apply the fault at `step`; returns the loss the training loop should see."""
        if step != self.step or self.kind in ("slow", "amx"):
            return loss
        if self.kind == "crash":
            os._exit(86)  # no cleanup, no result.json: what a killed worker leaves behind
        if self.kind == "hang":
            while True:
                time.sleep(3600)
        return float("nan")

    def slow_down(self, step: int, elapsed_s: float) -> None:
        """A `slow` fault: from its step on, wait as long as the step has taken so far."""
        if self.kind == "slow" and step >= self.step:
            time.sleep(elapsed_s)

    def census_lines(self, step: int) -> str:
        """An `amx` fault: the verbose line of an AMX kernel, for a census taken from its step on."""
        return AMX_EXEC_LINE if self.kind == "amx" and step >= self.step else ""
