"""Fault injection for testing what the harness does when a run goes wrong.

`HARNESS_FAULT=KIND@STEP[:PRECISION[:PHASE]]` makes the training worker misbehave at that step:
`crash` exits the process abruptly (as an OOM kill would), `nan` turns the loss into NaN
(divergence), `hang` stops making progress, `slow` makes every step from STEP on take twice as
long, `slow=F` F times as long (a regression of known size: `slow=1.1` is 10% more step time,
which the gate's calibration must catch), `amx` adds an AMX
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
    factor: float = 2.0
    """`slow`: how many times as long a step takes."""

    @classmethod
    def from_env(cls, precision: str, phase: int) -> Fault | None:
        """The fault meant for this run, if any."""
        spec = os.environ.get("HARNESS_FAULT", "")
        if not spec:
            return None
        head, _, rest = spec.partition("@")
        kind, _, factor = head.partition("=")
        step, *scope = rest.split(":")
        well_formed = (
            kind in KINDS
            and step.isdigit()
            and len(scope) <= 2
            and (len(scope) < 2 or scope[1].isdigit())
            and (not factor or (kind == "slow" and _factor(factor) > 1))
        )
        if not well_formed:
            raise HarnessError(
                f"HARNESS_FAULT={spec}: expected KIND@STEP[:PRECISION[:PHASE]] with KIND "
                f"one of {', '.join(KINDS)}, or slow=F with F > 1"
            )
        if (scope and scope[0] != precision) or (len(scope) == 2 and int(scope[1]) != phase):
            return None
        return cls(kind, int(step), _factor(factor) if factor else 2.0)

    def poison_loss(self, step: int, loss: float) -> float:
        """Apply the fault at `step`; returns the loss the training loop should see."""
        if step != self.step or self.kind in ("slow", "amx"):
            return loss
        if self.kind == "crash":
            os._exit(86)  # no cleanup, no result: what a killed worker leaves behind
        if self.kind == "hang":
            while True:
                time.sleep(3600)
        return float("nan")

    def slow_down(self, step: int, elapsed_s: float) -> None:
        """A `slow` fault: from its step on, wait (factor - 1) times as long as the step has taken."""
        if self.kind == "slow" and step >= self.step:
            time.sleep((self.factor - 1) * elapsed_s)

    def census_lines(self, step: int) -> str:
        """An `amx` fault: the verbose line of an AMX kernel, for a census taken from its step on."""
        return AMX_EXEC_LINE if self.kind == "amx" and step >= self.step else ""


def _factor(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")  # not > 1: refused as malformed
