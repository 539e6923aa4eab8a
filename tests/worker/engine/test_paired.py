"""The paired statistics against hand-computed and scipy / scikit-learn values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from worker.engine.paired import (
    auroc,
    mcnemar_exact_p,
    paired_bootstrap,
    paired_proportions_interval,
)


def test_mcnemar_counts_only_the_records_that_changed() -> None:
    # 3 newly extracted, none lost: (1/2)^3 by hand.
    assert mcnemar_exact_p(3, 0) == 0.125
    # 24 of 24 discordant pairs one way: 2^-24.
    assert mcnemar_exact_p(24, 0) == pytest.approx(2.0**-24)
    # 7 newly, 2 no longer: sum_{k>=7} C(9, k) / 2^9 = (36 + 9 + 1) / 512.
    assert mcnemar_exact_p(7, 2) == pytest.approx(46 / 512)
    assert mcnemar_exact_p(7, 2) == pytest.approx(binomtest(7, 9, 0.5, "greater").pvalue)
    # The other way round it is no evidence of worsening.
    assert mcnemar_exact_p(2, 7) == pytest.approx(binomtest(2, 9, 0.5, "greater").pvalue)
    assert mcnemar_exact_p(2, 7) > 0.9
    assert mcnemar_exact_p(0, 0) == 1.0


def test_mcnemar_agrees_with_scipy_on_large_counts() -> None:
    for newly, lost in ((120, 80), (500, 480), (31, 9)):
        expected = binomtest(newly, newly + lost, 0.5, "greater").pvalue
        assert mcnemar_exact_p(newly, lost) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        # Newcombe (1998), Statistics in Medicine 17:2635, Table II, method 10 (95%): pairs
        # (both, first only, second only, neither).
        ((36, 12, 2, 0), (0.0569, 0.3404)),
        ((18, 12, 2, 18), (0.0562, 0.3290)),
        ((53, 0, 0, 1), (-0.0729, 0.0729)),
        ((0, 30, 0, 0), (0.8395, 1.0)),
    ],
)
def test_the_paired_score_interval_matches_newcombes_published_values(table, expected) -> None:
    assert paired_proportions_interval(*table) == pytest.approx(expected, abs=1e-4)


def test_the_paired_score_interval_keeps_a_width_when_nothing_changed() -> None:
    # 20 records alike, none positive: Wilson's interval of 0/20 is [0, z^2 / (20 + z^2)] and
    # phi is 0 (a margin is empty), so p1 - p2 ranges +- that upper limit (0.1611).
    z = 1.959963984540054
    by_hand = z**2 / (20 + z**2)
    assert paired_proportions_interval(0, 0, 0, 20) == pytest.approx((-by_hand, by_hand))
    assert paired_proportions_interval(0, 0, 0, 20, level=0.01)[1] > by_hand  # stricter, wider


def test_auroc_is_mann_whitney_with_ties_counted_half() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), labels) == 0.75
    assert auroc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5  # all tied
    rng = np.random.default_rng(1)
    scores, labels = rng.normal(size=200), rng.integers(0, 2, size=200)
    scores[labels == 1] += 0.7
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert math.isnan(auroc(np.array([1.0, 2.0]), np.array([1, 1])))
    batch = np.stack([scores, -scores])  # (2, N): one call for a batch of resamples
    assert auroc(batch, np.stack([labels, labels])) == pytest.approx(
        [roc_auc_score(labels, scores), roc_auc_score(labels, -scores)]
    )


def test_the_bootstrap_is_seeded_and_brackets_the_difference() -> None:
    rng = np.random.default_rng(0)
    before = rng.normal(2.0, 0.5, size=300)
    now = before + 0.2 + rng.normal(0, 0.1, size=300)  # worse by 0.2, paired noise 0.1

    def difference(idx: np.ndarray) -> np.ndarray:
        return now[idx].mean(axis=-1) - before[idx].mean(axis=-1)

    first = paired_bootstrap(difference, 300, seed=7)
    assert first == paired_bootstrap(difference, 300, seed=7)
    assert first.estimate == pytest.approx(float((now - before).mean()))
    # The paired standard error is 0.1 / sqrt(300) ~ 0.0058: the 95% interval is ~ +-0.011.
    assert first.low < first.estimate < first.high
    assert first.high - first.low == pytest.approx(2 * 1.96 * 0.1 / math.sqrt(300), rel=0.2)
    assert first.p_above_zero == pytest.approx(1 / 2001)  # no resample shows no worsening


def test_identical_audits_differ_by_exactly_nothing() -> None:
    values = np.arange(50, dtype=float)
    interval = paired_bootstrap(lambda idx: values[idx].mean(-1) - values[idx].mean(-1), 50)
    assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert interval.p_above_zero == 1.0


def test_strata_keep_each_class_in_every_resample() -> None:
    labels = np.array([1] * 5 + [0] * 45)
    seen = []

    def members(idx: np.ndarray) -> np.ndarray:
        seen.extend(labels[idx].sum(axis=-1).tolist())
        return np.zeros(len(idx))

    paired_bootstrap(members, 50, n_resamples=200, strata=labels)
    assert set(seen) == {5}
