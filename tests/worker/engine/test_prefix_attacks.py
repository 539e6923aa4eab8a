"""The held-out scores' formulas on hand-worked numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.engine.prefix_attacks import (
    con_recall_score,
    dc_pdd_score,
    first_occurrences,
    recall_score,
    smoothed_log_frequencies,
    token_counts,
)


def test_recall_ranks_a_larger_drop_after_the_prefix_higher() -> None:
    # LL(x) = -2; the prefix drops a member to -3 and a non-member only to -2.1.
    assert recall_score(-3.0, -2.0) == pytest.approx(1.5)
    assert recall_score(-3.0, -2.0) > recall_score(-2.1, -2.0)
    assert recall_score(-1.0, 0.0) is None
    assert con_recall_score(-3.0, -1.0, -2.0, 0.5) == pytest.approx((-3.0 + 0.5) / -2.0)


def test_frequencies_are_laplace_smoothed_over_the_vocabulary() -> None:
    counts = token_counts([[0, 0, 1], [0]], vocab_size=4)
    assert counts.tolist() == [3, 1, 0, 0]
    expected = np.log(np.array([4, 2, 1, 1]) / (4 + 4))
    np.testing.assert_allclose(smoothed_log_frequencies(counts), expected)


def test_dc_pdd_reads_first_occurrences_and_caps_each_token() -> None:
    assert first_occurrences([5, 3, 5, 3, 7]).tolist() == [0, 1, 4]
    log_f = np.log(np.array([0.5, 0.25, 0.25]))
    logprobs = np.log([0.01, 0.001, 0.5])
    # Tokens 0, 1, 0: the repeat (p = 0.5) is not read; neither value reaches the cap of 1.
    expected = (0.01 * math.log(2) + 0.001 * math.log(4)) / 2
    assert dc_pdd_score(logprobs, [0, 1, 0], log_f, cap=1.0) == pytest.approx(expected)
    capped = dc_pdd_score(logprobs, [0, 1, 0], log_f, cap=0.002)
    assert capped == pytest.approx((0.002 + 0.001 * math.log(4)) / 2)
    assert dc_pdd_score(np.zeros(0), [], log_f) is None
