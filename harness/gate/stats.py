"""Is the current run slower than the baseline, beyond noise? Judged on per-step samples.

Step times of a run are not normal (a long tail from the OS, the allocator, a neighbour), so the
test is rank-based: a one-sided Mann-Whitney U test that the current samples come from a slower
distribution. For the small samples a BERT-Large run yields (8 timed steps) the exact null
distribution is used; for large or tied samples, the normal approximation with tie correction.
The ratio of medians gets a bootstrap confidence interval, for the reader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXACT_MAX = 50
"""Samples per side up to which the exact U distribution is computed (O(m*n*min(m,n)) integers)."""


def _u_statistic(current: np.ndarray, baseline: np.ndarray) -> float:
    """Pairs where the current sample is the larger, ties counted half."""
    diff = current[:, None] - baseline[None, :]
    return float((diff > 0).sum() + 0.5 * (diff == 0).sum())


def _exact_cdf(u: float, m: int, n: int) -> float:
    """P(U <= u) for samples of sizes m and n without ties: the coefficients of the Gaussian
    binomial [m+n choose m]_q count the orderings giving each U, computed as a power series
    truncated at degree m*n (exact, since the result is a polynomial of that degree)."""
    size = m * n + 1
    counts = [0] * size
    counts[0] = 1
    for i in range(1, min(m, n) + 1):
        big = max(m, n) + i
        for j in range(size - 1, big - 1, -1):  # times (1 - q^big)
            counts[j] -= counts[j - big]
        for j in range(i, size):  # over (1 - q^i)
            counts[j] += counts[j - i]
    return sum(counts[: math.floor(u) + 1]) / math.comb(m + n, m)


def _normal_cdf(u: float, current: np.ndarray, baseline: np.ndarray) -> float:
    m, n = len(current), len(baseline)
    _, tie_counts = np.unique(np.concatenate([current, baseline]), return_counts=True)
    total = m + n
    variance = m * n / 12 * ((total + 1) - float((tie_counts**3 - tie_counts).sum()) / (total * (total - 1)))
    if variance <= 0:
        return 1.0
    z = (u + 0.5 - m * n / 2) / math.sqrt(variance)  # continuity-corrected
    return 0.5 * math.erfc(-z / math.sqrt(2))


def slower_p_value(current: np.ndarray, baseline: np.ndarray) -> float:
    """One-sided p-value of 'current is no slower than baseline', for samples of a rate (higher
    is faster): small when the current samples rank consistently below the baseline's."""
    if len(current) == 0 or len(baseline) == 0:
        return math.nan
    u = _u_statistic(current, baseline)
    tied = len(np.unique(np.concatenate([current, baseline]))) < len(current) + len(baseline)
    if not tied and max(len(current), len(baseline)) <= EXACT_MAX:
        return _exact_cdf(u, len(current), len(baseline))
    return _normal_cdf(u, current, baseline)


def median_ratio_ci(
    current: np.ndarray, baseline: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of median(current) / median(baseline); seeded, so the same
    samples always give the same interval."""
    rng = np.random.default_rng(seed)
    c = np.median(rng.choice(current, (resamples, len(current))), axis=1)
    b = np.median(rng.choice(baseline, (resamples, len(baseline))), axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(c / b, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Comparison:
    """Current against baseline samples of one configuration's throughput."""

    baseline_median: float
    current_median: float
    ratio: float
    """current / baseline median; below 1 is slower."""
    ratio_ci: tuple[float, float]
    p_value: float
    """One-sided Mann-Whitney p-value that current is not slower."""
    samples: tuple[int, int]
    """(baseline, current) sample counts."""

    @property
    def change(self) -> float:
        return self.ratio - 1


def compare_samples(current: np.ndarray, baseline: np.ndarray) -> Comparison:
    b, c = float(np.median(baseline)), float(np.median(current))
    return Comparison(
        b,
        c,
        c / b,
        median_ratio_ci(current, baseline),
        slower_p_value(current, baseline),
        (len(baseline), len(current)),
    )
