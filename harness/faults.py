"""Fault injection for testing what the harness does when a run goes wrong.

`HARNESS_FAULT=KIND@STEP` makes the training worker misbehave at that step: `crash` exits the
process abruptly (as an OOM kill would), `nan` turns the loss into NaN (divergence), `hang` stops
making progress. Tests and the compare/gate suites use it to exercise resume, divergence and
time-out handling on real worker processes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from harness.errors import HarnessError

KINDS = ("crash", "nan", "hang")


@dataclass(frozen=True)
class Fault:
    kind: str
    step: int

    @classmethod
    def from_env(cls) -> Fault | None:
        spec = os.environ.get("HARNESS_FAULT", "")
        if not spec:
            return None
        kind, _, step = spec.partition("@")
        if kind not in KINDS or not step.isdigit():
            raise HarnessError(f"HARNESS_FAULT={spec}: expected KIND@STEP with KIND one of {KINDS}")
        return cls(kind, int(step))

    def poison_loss(self, step: int, loss: float) -> float:
        """Apply the fault at `step`; returns the loss the training loop should see."""
        if step != self.step:
            return loss
        if self.kind == "crash":
            os._exit(86)  # no cleanup, no result.json: what a killed worker leaves behind
        if self.kind == "hang":
            while True:
                time.sleep(3600)
        return float("nan")
