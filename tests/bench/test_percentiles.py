"""The benches' one percentile rule: numpy's default (linear between order statistics)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bench.percentiles import percentile


@pytest.mark.parametrize("n", [2, 5, 20, 200])
def test_a_percentile_interpolates_between_order_statistics(n: int) -> None:
    rng = random.Random(n)
    times = [rng.expovariate(1.0) for _ in range(n)]
    for q in (50, 95, 99):
        assert percentile(times, q) == pytest.approx(float(np.percentile(times, q)), rel=1e-12)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
