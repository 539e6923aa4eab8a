"""The one percentile rule of the benches, so a p95 here means what a p95 there does.

`statistics.quantiles` with the inclusive method: the sample is the whole population of
timings, and a percentile is interpolated between its order statistics (numpy's default).

>>> percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50), percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95)
(3.0, 4.8)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (q in 1..99) of at least two values."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
