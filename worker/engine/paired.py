"""Paired comparisons of two audits on the records both scored.

Two versions of a model audited on the same records differ record by record, so their
difference is measured on pairs: McNemar's exact test for per-record verdicts (extracted or
not: only the records that changed carry information) with Newcombe's score interval for the
difference of the two rates, and a seeded paired bootstrap (the same records resampled for both)
for AUROC and means.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, norm, rankdata


def mcnemar_exact_p(newly: int, no_longer: int) -> float:
    """One-sided exact McNemar p: P(X >= newly) for X ~ Binomial(newly + no_longer, 1/2), the
    chance of at least this many records turning positive among those that changed if the
    change were noise. 1.0 when no record changed.

    >>> mcnemar_exact_p(3, 0)
    0.125
    """
    discordant = newly + no_longer
    if discordant == 0:
        return 1.0
    return float(binom.sf(newly - 1, discordant, 0.5))


def wilson_interval(positives: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval of the proportion positives / n: never zero-width, never
    outside [0, 1], even at 0 or n positives (where a Wald interval collapses)."""
    centre = (positives + z * z / 2) / (n + z * z)
    half = z * math.sqrt(positives * (n - positives) / n + z * z / 4) / (n + z * z)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_proportions_interval(
    both: int, first_only: int, second_only: int, neither: int, level: float = 0.05
) -> tuple[float, float]:
    """The (1 - level) interval of p1 - p2, the difference of two rates read on the same
    records (p1 = (both + first_only) / n, p2 = (both + second_only) / n): Newcombe's hybrid
    score interval for paired data (method 10 of Newcombe 1998, Statistics in Medicine 17,
    2635-2650). It combines the two rates' Wilson intervals through the correlation phi of the
    pairs, so unlike a percentile bootstrap it keeps a width when no record changed: 50 of 50
    records alike still leave a difference of a few points possible.

    >>> [round(x, 4) for x in paired_proportions_interval(36, 12, 2, 0)]
    [0.0569, 0.3404]
    """
    n = both + first_only + second_only + neither
    z = float(norm.ppf(1 - level / 2))
    first, second = (both + first_only) / n, (both + second_only) / n
    low1, high1 = wilson_interval(both + first_only, n, z)
    low2, high2 = wilson_interval(both + second_only, n, z)
    margins = (both + first_only) * (second_only + neither) * (both + second_only)
    margins *= first_only + neither
    phi = 0.0
    if margins:
        # Newcombe's corrected phi: a positive association shrunk by n/2 (never below 0).
        concordance = both * neither - first_only * second_only
        if concordance > 0:
            concordance = max(concordance - n / 2, 0.0)
        phi = concordance / math.sqrt(margins)
    below = (first - low1) ** 2 - 2 * phi * (first - low1) * (high2 - second)
    below += (high2 - second) ** 2
    above = (high1 - first) ** 2 - 2 * phi * (high1 - first) * (second - low2)
    above += (second - low2) ** 2
    difference = first - second
    return max(-1.0, difference - math.sqrt(below)), min(1.0, difference + math.sqrt(above))


def auroc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray | float:
    """ROC AUC by the Mann-Whitney statistic, ties counted half (midranks); labels are 1 for
    members. Along the last axis, so a batch of resamples (B, N) is one call; NaN without both
    classes.

    >>> float(auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])))
    0.75
    """
    positives = (labels == 1).sum(axis=-1)
    negatives = labels.shape[-1] - positives
    ranks = rankdata(scores, axis=-1)  # (..., N) midranks
    rank_sum = (ranks * (labels == 1)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        found = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return float(found) if np.ndim(found) == 0 else found


@dataclass(frozen=True)
class PairedInterval:
    estimate: float  # the difference on every shared record
    low: float  # the percentile interval of the difference at 1 - level
    high: float
    p_above_zero: float  # one-sided bootstrap p of "the difference is > 0"
    n_resamples: int
    seed: int


RESAMPLE_CELLS = 2_000_000  # indices drawn at once: bounded memory, vectorized speed


def paired_bootstrap(
    difference_on: Callable[[np.ndarray], np.ndarray],
    n_records: int,
    *,
    level: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
    strata: np.ndarray | None = None,
) -> PairedInterval:
    """Resample the shared records (the same indices for both audits) and read the difference
    `difference_on(indices)` for a batch of resamples at once: indices (B, N) in, (B,) out.
    `strata` (e.g. member labels) resamples within each group, so an AUROC always sees both
    classes in their original counts.

    The p is (1 + #{difference* <= 0}) / (1 + resamples): how often a resample shows no
    worsening, never exactly 0.
    """
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n_records)]
        if strata is None
        else [np.flatnonzero(strata == value) for value in np.unique(strata)]
    )
    batch = max(1, RESAMPLE_CELLS // max(n_records, 1))
    draws = []
    for start in range(0, n_resamples, batch):
        size = min(batch, n_resamples - start)
        indices = np.concatenate(
            [g[rng.integers(0, len(g), size=(size, len(g)))] for g in groups], axis=1
        )  # (B, N)
        draws.append(np.asarray(difference_on(indices), dtype=float))
    resampled = np.concatenate(draws)
    low, high = np.quantile(resampled, [level / 2, 1 - level / 2])
    at_most_zero = int((resampled <= 0).sum())
    return PairedInterval(
        estimate=float(np.asarray(difference_on(np.arange(n_records)[None, :]))[0]),
        low=float(low),
        high=float(high),
        p_above_zero=(1 + at_most_zero) / (1 + n_resamples),
        n_resamples=n_resamples,
        seed=seed,
    )
