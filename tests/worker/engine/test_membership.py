"""Membership scores and ROC statistics (METRICS.md §3, validation facts 1-4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.bootstrap_scale import resorted_metrics
from worker.engine.membership import (
    ResampledRoc,
    fpr_at_tpr,
    membership_report,
    mink,
    minkpp,
    roc_curve,
    tpr_at_fpr,
)
from worker.engine.token_stats import TokenStats

LOGPROBS = np.array([-0.1, -2.0, -0.5, -3.0, -1.0])


def test_fact_1_loss_and_mink() -> None:
    assert LOGPROBS.mean() == pytest.approx(-1.32)
    assert mink(LOGPROBS, 0.2)[0] == pytest.approx(-3.0)
    assert mink(LOGPROBS, 0.4)[0] == pytest.approx(-2.5)
    assert mink(LOGPROBS, 1.0)[0] == pytest.approx(-1.32)
    assert mink(LOGPROBS[:2], 0.2) == (pytest.approx(-2.0), True)  # k_len 0 -> 1, flagged


def _two_token(q: float) -> TokenStats:
    logp = np.log([q, 1 - q])
    p = np.exp(logp)
    mu = float((p * logp).sum())
    sigma = math.sqrt(float((p * logp**2).sum()) - mu**2)
    return TokenStats(2, np.array([logp[0]]), entropy=np.array([-mu]), sigma=np.array([sigma]))


def test_fact_2_minkpp_two_token() -> None:
    assert minkpp(_two_token(0.75), 1.0)[0] == pytest.approx(0.57735, abs=1e-5)
    assert minkpp(_two_token(0.25), 1.0)[0] == pytest.approx(-1.73205, abs=1e-5)
    uniform = TokenStats(
        2, np.array([math.log(0.5)]), entropy=np.array([math.log(2)]), sigma=np.array([0.0])
    )
    assert minkpp(uniform, 1.0) == (0.0, False, True)


def test_fact_3_roc() -> None:
    roc = roc_curve([0.9, 0.8, 0.4], [0.7, 0.3, 0.2])
    assert roc.auc == pytest.approx(8 / 9)
    assert tpr_at_fpr(roc, 0.05) == pytest.approx(2 / 3)
    assert fpr_at_tpr(roc, 0.95) == pytest.approx(1 / 3)
    assert roc_curve([3, 4], [1, 2]).auc == 1.0
    assert roc_curve([1, 1, 1], [1, 1]).auc == 0.5


ROC_CASES = {
    "continuous": (
        np.random.default_rng(1).normal(0.3, 1, 300),
        np.random.default_rng(2).normal(0, 1, 200),
    ),
    # Ties within and across the classes: one ROC point per distinct score, ties count half.
    "ties": (
        np.random.default_rng(3).integers(0, 5, 120),
        np.random.default_rng(4).integers(0, 4, 90),
    ),
    "all_equal": ([0.5] * 4, [0.5] * 7),
    "one_each": ([1.0], [0.0]),
    "one_each_tied": ([2.0], [2.0]),
    "one_each_reversed": ([0.0], [1.0]),
    "one_member_among_ties": ([1.0], [1.0, 1.0, 0.0]),
}


@pytest.mark.parametrize("case", ROC_CASES)
def test_roc_equals_sklearn(case: str) -> None:
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve as sklearn_roc_curve

    members, nonmembers = ROC_CASES[case]
    scores = np.r_[np.asarray(members, float), np.asarray(nonmembers, float)]
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    fpr, tpr, _ = sklearn_roc_curve(labels, scores, drop_intermediate=False)
    roc = roc_curve(members, nonmembers)
    np.testing.assert_allclose(roc.fpr, fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(roc.tpr, tpr, rtol=0, atol=1e-15)
    assert roc.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_refuses_an_empty_side() -> None:
    with pytest.raises(ValueError, match="members and non-members"):
        roc_curve([], [0.1, 0.2])
    with pytest.raises(ValueError, match="members and non-members"):
        roc_curve([0.1], [])


def test_fact_4_resolution_guard_and_no_silent_flip() -> None:
    rng = np.random.default_rng(0)
    report = membership_report(rng.normal(1, 1, 200), rng.normal(0, 1, 999), bootstrap=20)
    assert report["tpr_at_0.001_fpr"] == {
        "value": None,
        "ci95": [None, None],
        "reason": "insufficient_nonmembers",
    }
    assert report["tpr_at_0.01_fpr"]["value"] is not None
    flipped = membership_report([0.1, 0.2], [0.8, 0.9], bootstrap=0)
    assert flipped["auroc"]["value"] == 0.0  # reported as is, never auto-flipped


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    members, others = rng.normal(1, 1, 100), rng.normal(0, 1, 100)
    a = membership_report(members, others, bootstrap=200, seed=7)
    b = membership_report(members, others, bootstrap=200, seed=7)
    assert a["auroc"] == b["auroc"]
    low, high = a["auroc"]["ci95"]
    assert low < a["auroc"]["value"] < high


def _resorted_intervals(
    members: np.ndarray, nonmembers: np.ndarray, bootstrap: int, seed: int
) -> dict[str, list[float]]:
    """The definition (the bench's baseline): each resample's values drawn, its ROC rebuilt."""
    draws = resorted_metrics(members, nonmembers, bootstrap, seed)
    return {name: np.percentile(values, [2.5, 97.5]).tolist() for name, values in draws.items()}


@pytest.mark.parametrize("seed", [0, 1, 7, 2**32 - 1])
def test_bootstrap_by_counts_gives_the_intervals_of_resorting(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Few distinct values: ties within members, within non-members and across the two.
    members = rng.integers(0, 12, 150).astype(float)
    nonmembers = rng.integers(0, 9, 1100).astype(float)
    report = membership_report(members, nonmembers, bootstrap=300, seed=seed)
    expected = _resorted_intervals(members, nonmembers, 300, seed)
    assert {name: report[name]["ci95"] for name in expected} == expected


def test_a_resample_by_counts_is_the_roc_of_the_resampled_values() -> None:
    rng = np.random.default_rng(3)
    members, nonmembers = rng.normal(0.5, 1, 40).round(1), rng.normal(0, 1, 30).round(1)
    resampled = ResampledRoc(members, nonmembers)
    for _ in range(50):
        member_draw, nonmember_draw = rng.integers(0, 40, 40), rng.integers(0, 30, 30)
        roc = resampled(member_draw, nonmember_draw)
        direct = roc_curve(members[member_draw], nonmembers[nonmember_draw])
        assert roc.fpr.tolist() == direct.fpr.tolist()
        assert roc.tpr.tolist() == direct.tpr.tolist()
        assert roc.auc == direct.auc
