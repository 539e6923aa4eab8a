"""Histograms and intervals that summaries carry for the report."""

from __future__ import annotations

import math

import pytest

from worker.engine.distributions import mean_interval, shared_histogram, wilson_interval


def test_groups_share_edges_and_missing_values_are_counted() -> None:
    histogram = shared_histogram(
        {"members": [0.0, 1.0, None, math.inf], "nonmembers": [2.0, -math.inf]}, bins=4
    )
    assert histogram["edges"] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert histogram["counts"] == {"members": [1, 0, 1, 0], "nonmembers": [0, 0, 0, 1]}
    assert histogram["n_missing"] == {"members": 2, "nonmembers": 1}


def test_one_repeated_value_gets_a_bin_and_nothing_finite_gets_none() -> None:
    single = shared_histogram({"all": [3.0, 3.0]}, bins=2)
    assert single["edges"] == [2.5, 3.0, 3.5] and sum(single["counts"]["all"]) == 2
    empty = shared_histogram({"all": [None]})
    assert empty["edges"] == [] and empty["n_missing"] == {"all": 1}


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    # Reference values: statsmodels proportion_confint(method="wilson").
    [(0, 10, (0.0, 0.27753)), (5, 10, (0.23659, 0.76341)), (10, 10, (0.72247, 1.0))],
)
def test_wilson_interval(successes: int, n: int, expected: tuple[float, float]) -> None:
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(expected[0], abs=1e-5)
    assert high == pytest.approx(expected[1], abs=1e-5)
    assert wilson_interval(0, 0) == [None, None]


def test_mean_interval_is_the_normal_approximation() -> None:
    low, high = mean_interval([1.0, 2.0, 3.0, 4.0])
    half = 1.959963984540054 * math.sqrt(5 / 3) / 2
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))
    assert mean_interval([1.0]) == [None, None]
