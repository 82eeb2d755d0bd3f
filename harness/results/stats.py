"""Every statistic a page or a gate shows: spread of samples, a ratio with its interval, the test.

One percentile definition (numpy's default, linear interpolation) for every median, p10 and p90.

The unit of replication is the run: steps of one process share its memory layout, core placement
and neighbours, so their spread understates the noise between processes. Ratios, intervals and
the rank test therefore take one number per run (its median step rate); per-step samples only
describe the spread inside a run. Intervals are a seeded percentile bootstrap and the test a
one-sided Mann-Whitney U test, both from scipy.stats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_RUNS = 3
"""Runs a side below which no interval and no p-value is given: with two runs a side the
bootstrap has four distinct resamples and the smallest possible one-sided p-value is 1/6."""
CONFIDENCE = 0.95
POWER = 0.8
"""For the smallest detectable change: the change a test at alpha would catch 80% of the time."""


@dataclass(frozen=True)
class Spread:
    """Median, p10, p90 and coefficient of variation of samples."""

    median: float
    p10: float
    p90: float
    cv: float
    """Standard deviation over mean (population); 0 for a single sample."""
    n: int

    @classmethod
    def of(cls, samples: Sequence[float] | np.ndarray) -> Spread:
        x = np.asarray(samples, dtype=np.float64)
        x = x[np.isfinite(x)]
        if len(x) == 0:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        p10, median, p90 = np.percentile(x, [10, 50, 90])
        cv = float(x.std() / x.mean()) if len(x) > 1 and x.mean() else 0.0
        return cls(float(median), float(p10), float(p90), cv, len(x))


@dataclass(frozen=True)
class Ratio:
    """median(numerator) / median(denominator), each a list of per-run figures."""

    value: float
    low: float
    """Lower end of the 95% bootstrap interval; nan with fewer than MIN_RUNS runs a side."""
    high: float
    n: tuple[int, int]
    """(numerator, denominator) runs."""

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def significant(self) -> bool:
        """The interval lies wholly above or below 1."""
        return self.has_interval and (self.low > 1 or self.high < 1)

    def text(self, unit: str = "x") -> str:
        """'1.52x (95% CI 1.31..1.74, 5/5 runs)' or '1.52x (1/1 runs: no interval)'."""
        if not math.isfinite(self.value):
            return "-"
        runs = f"{self.n[0]}/{self.n[1]} runs"
        if not self.has_interval:
            return f"{self.value:.3f}{unit} ({runs}: no interval under {MIN_RUNS} a side)"
        return f"{self.value:.3f}{unit} (95% CI {self.low:.3f}..{self.high:.3f}, {runs})"


def _clean(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


def ratio(numerator: Sequence[float], denominator: Sequence[float], seed: int = 0) -> Ratio:
    """The ratio of medians, with a percentile bootstrap interval when both sides have at least
    MIN_RUNS runs; seeded, so the same figures always give the same interval."""
    a, b = _clean(numerator), _clean(denominator)
    if len(a) == 0 or len(b) == 0:
        return Ratio(math.nan, math.nan, math.nan, (len(a), len(b)))
    value = float(np.median(a) / np.median(b))
    if min(len(a), len(b)) < MIN_RUNS:
        return Ratio(value, math.nan, math.nan, (len(a), len(b)))
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread: the bootstrap has nothing to resample
        return Ratio(value, value, value, (len(a), len(b)))
    from scipy import stats  # 1.4 s to import: every worker loads this module, few call scipy

    result = stats.bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis),
        confidence_level=CONFIDENCE,
        n_resamples=4000,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return Ratio(value, float(low), float(high), (len(a), len(b)))


def slower_p_value(current: Sequence[float], baseline: Sequence[float]) -> float:
    """One-sided p-value of 'current is no slower than baseline', for per-run rates (higher is
    faster); nan with fewer than MIN_RUNS runs a side."""
    c, b = _clean(current), _clean(baseline)
    if min(len(c), len(b)) < MIN_RUNS:
        return math.nan
    from scipy import stats

    return float(stats.mannwhitneyu(c, b, alternative="less").pvalue)


def smallest_p_value(m: int, n: int) -> float:
    """The smallest one-sided p-value the exact rank test can give with m and n runs: when every
    current run is slower than every baseline run."""
    return 1 / math.comb(m + n, m)


def detectable_change(cv: float, m: int, n: int, alpha: float) -> float:
    """The smallest relative change a one-sided test at alpha would catch with POWER, for runs
    whose figures scatter with coefficient of variation cv (normal approximation)."""
    if not math.isfinite(cv) or m < 1 or n < 1:
        return math.nan
    from scipy import stats

    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(POWER)
    return float(z * cv * math.sqrt(1 / m + 1 / n))


def between_run_cv(*sides: Sequence[float]) -> float:
    """Pooled coefficient of variation of per-run figures over the sides that have two or more
    runs; nan when none has."""
    cvs = [(len(x), float(np.std(x, ddof=1) / np.mean(x))) for x in map(_clean, sides) if len(x) > 1]
    if not cvs:
        return math.nan
    dof = sum(k - 1 for k, _ in cvs)
    return math.sqrt(sum((k - 1) * cv**2 for k, cv in cvs) / dof)
