"""harness.results.stats: one percentile definition, ratios with intervals from the runs, the
rank test, and what too few runs can and cannot say."""

import math

import numpy as np
import pytest

from harness.results.stats import (
    Spread,
    between_run_cv,
    detectable_change,
    ratio,
    slower_p_value,
    smallest_p_value,
)


def test_spread_uses_one_percentile_definition_and_ignores_missing_values():
    s = Spread.of([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert (s.median, s.p10, s.p90, s.n) == (2.5, 1.3, 3.7, 4)
    assert s.cv == pytest.approx(np.std([1, 2, 3, 4]) / 2.5)
    assert Spread.of([]).n == 0 and math.isnan(Spread.of([]).median)


def test_a_ratio_needs_three_runs_a_side_for_an_interval():
    one = ratio([12.0], [10.0])
    assert one.value == pytest.approx(1.2) and not one.has_interval and not one.significant
    assert "no interval under 3 a side" in one.text()
    rng = np.random.default_rng(1)
    base = 10 * (1 + 0.03 * rng.standard_normal(5))
    faster = ratio(base * 1.5, base[::-1])
    assert faster.has_interval and faster.significant and 1 < faster.low < 1.5 < faster.high
    noise = ratio(base, base[::-1])
    assert noise.low < 1 < noise.high and not noise.significant
    # seeded: the same figures give the same interval
    assert ratio(base * 1.5, base[::-1]) == faster


def test_the_rank_test_sees_a_shift_between_runs_and_not_its_absence():
    rng = np.random.default_rng(3)
    baseline = rng.lognormal(0, 0.05, 8)
    assert slower_p_value(baseline * 0.6, baseline) == pytest.approx(smallest_p_value(8, 8))
    assert slower_p_value(rng.permutation(baseline), baseline) > 0.3
    assert math.isnan(slower_p_value(baseline[:2], baseline))


def test_the_smallest_p_value_and_detectable_change_of_few_runs():
    assert smallest_p_value(3, 3) == pytest.approx(1 / 20)
    assert smallest_p_value(5, 5) == pytest.approx(1 / 252)
    # more runs or less spread: a smaller change can be told from noise
    assert detectable_change(0.08, 5, 5, 0.01) < detectable_change(0.08, 3, 3, 0.01)
    assert detectable_change(0.04, 3, 3, 0.01) == pytest.approx(detectable_change(0.08, 3, 3, 0.01) / 2)
    assert math.isnan(between_run_cv([10.0], [11.0]))
    assert between_run_cv([10.0, 12.0], [10.0, 12.0]) == pytest.approx(np.std([10, 12], ddof=1) / 11)
