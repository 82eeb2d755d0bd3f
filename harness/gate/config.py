"""What the gate tolerates: its thresholds and floors, parsed and validated in one place.

Kept apart from the checks (which load run sets with pandas) so that the command line can build
its flags from GateConfig without loading them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.results.records import LOSS_TOLERANCE, mode_label


@dataclass(frozen=True)
class SpeedupFloor:
    numerator: str
    denominator: str
    floor: float

    @classmethod
    def parse(cls, spec: str) -> SpeedupFloor:
        """'bf16/fp32=1.5': bf16 must run at least 1.5x fp32's sequences/s in the same phase."""
        try:
            pair, value = spec.split("=")
            numerator, denominator = pair.split("/")
            floor = float(value.rstrip("x"))
        except ValueError:
            raise HarnessError(
                f"--min-speedup {spec}: expected MODE/MODE=FACTOR, e.g. bf16/fp32=1.5"
            ) from None
        # nan and inf parse as floats, but no run could pass such a floor
        if not math.isfinite(floor) or floor <= 0 or not numerator or not denominator:
            raise HarnessError(f"--min-speedup {spec}: expected MODE/MODE=FACTOR with FACTOR a number > 0")
        if numerator == denominator:
            raise HarnessError(f"--min-speedup {spec}: expected two different modes, e.g. bf16/fp32=1.5")
        return cls(numerator, denominator, floor)


def parse_max_regression(spec: str) -> tuple[str, float]:
    """'5%' or '0.05' as ('', 0.05), every mode's limit; 'bf16=8%' as ('bf16', 0.08), bf16's own.
    A message names the whole spec: the mode alone would not say which flag was wrong."""
    mode, equals, text = spec.partition("=")
    if not equals:
        mode, text = "", spec
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = None
    if value is None or (equals and not mode):
        raise HarnessError(
            f"--max-regression {spec}: expected a share such as 5% or 0.05, or MODE=SHARE such as bf16=8%"
        )
    if not 0 <= value < 1:
        raise HarnessError(f"--max-regression {spec}: expected a share in [0%, 100%)")
    return mode, value


@dataclass
class GateConfig:
    """What the gate tolerates; every field has a command-line flag of the same name."""

    max_regression: float = 0.05
    """Largest tolerated drop of median throughput against the baseline."""
    max_regression_for: dict[str, float] = field(default_factory=dict)
    """Per-precision overrides of max_regression (--max-regression bf16=8%)."""
    alpha: float = 0.01
    """A drop must also be significant: one-sided Mann-Whitney p-value of the runs' medians below
    alpha. Where the runs cannot give such a p-value (under 3 a side, or too few for alpha), the
    threshold alone judges."""
    min_speedup: list[SpeedupFloor] = field(default_factory=list)
    loss_tolerance: float = LOSS_TOLERANCE
    """Final loss may exceed the baseline's, and fp32's in the same run set, by this share."""
    accuracy_tolerance: float = 0.02
    """Eval MLM accuracy may fall below the baseline's by this much (absolute)."""
    allow_missing: bool = False
    """A configuration of the current set that the baseline lacks passes, noted, instead of
    failing: nothing can be said of its throughput."""

    def validate(self) -> None:
        if not 0 < self.alpha < 1:
            raise HarnessError(f"--alpha {self.alpha}: expected a p-value in (0, 1), e.g. 0.01")
        for flag, value in (
            ("--loss-tolerance", self.loss_tolerance),
            ("--accuracy-tolerance", self.accuracy_tolerance),
        ):
            if not 0 <= value < 1:
                raise HarnessError(f"{flag} {value}: expected a share in [0, 1), e.g. 0.02")

    def threshold(self, precision: str, backend: str = "stock") -> float:
        """The mode's own limit (bf16+ipex, then bf16), else the general one."""
        own = self.max_regression_for
        return own.get(mode_label(precision, backend), own.get(precision, self.max_regression))
