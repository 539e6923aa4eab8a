"""Binned distributions and interval estimates that summaries carry for the report.

Summaries hold histograms rather than raw values so a report over a million samples is drawn
from a few hundred numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_BINS = 40


def shared_histogram(
    groups: Mapping[str, Sequence[float | None]], bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """Counts per group over one set of edges, so groups overlay bin for bin.

    Non-finite and missing values are left out and counted in `n_missing`.
    """
    finite = {
        name: np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
        for name, values in groups.items()
    }
    pooled = np.concatenate([v for v in finite.values()] or [np.zeros(0)])
    missing = {name: len(values) - len(finite[name]) for name, values in groups.items()}
    if pooled.size == 0:
        return {"edges": [], "counts": {name: [] for name in groups}, "n_missing": missing}
    low, high = float(pooled.min()), float(pooled.max())
    if low == high:  # one value: a single bin of width 1 around it
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    counts = {name: np.histogram(v, edges)[0].tolist() for name, v in finite.items()}
    return {"edges": edges.tolist(), "counts": counts, "n_missing": missing}


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> list[float | None]:
    """95% Wilson score interval of a proportion; sound at 0% and 100% where Wald is not.

    >>> [round(x, 4) for x in wilson_interval(0, 10)]
    [0.0, 0.2775]
    """
    if n == 0:
        return [None, None]
    phat = successes / n
    denominator = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denominator
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denominator
    return [max(0.0, centre - half), min(1.0, centre + half)]


def mean_interval(values: Sequence[float], z: float = 1.959963984540054) -> list[float | None]:
    """Normal-approximation 95% interval of a mean (needs two values or more)."""
    if len(values) < 2:
        return [None, None]
    array = np.asarray(values, float)
    half = z * float(array.std(ddof=1)) / math.sqrt(len(array))
    mean = float(array.mean())
    return [mean - half, mean + half]


def quantile_summary(values: np.ndarray) -> dict[str, float]:
    """Min, 5/25/50/75/95th percentiles, max and mean: a distribution in eight numbers."""
    q = np.quantile(values, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    return {
        "min": float(q[0]),
        "q05": float(q[1]),
        "q25": float(q[2]),
        "median": float(q[3]),
        "q75": float(q[4]),
        "q95": float(q[5]),
        "max": float(q[6]),
        "mean": float(values.mean()),
    }
