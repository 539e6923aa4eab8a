"""(n,p)-extraction arithmetic (METRICS.md §2.4, validation facts 1, 2, 5, 6)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.engine.extraction import (
    n_min,
    prob_extracted_within,
    summarize_extraction,
    window_offsets,
    window_values,
)
from worker.engine.token_stats import TokenStats


def test_fact_1_n_min_for_pz_0_162() -> None:
    p_z = 0.162
    assert [n_min(p_z, p) for p in (0.1, 0.5, 0.9, 0.99)] == [1, 4, 14, 27]
    raw = [math.log1p(-p) / math.log1p(-p_z) for p in (0.1, 0.5, 0.9, 0.99)]
    assert raw == pytest.approx([0.596, 3.922, 13.028, 26.06], abs=5e-3)
    assert 1 / p_z == pytest.approx(6.17, abs=5e-3)


def test_fact_2_fifty_tokens_at_0_9() -> None:
    p_z = 0.9**50
    assert p_z == pytest.approx(0.0051538, rel=1e-4)
    assert math.log1p(-0.5) / math.log1p(-p_z) == pytest.approx(134.146, abs=1e-3)
    assert n_min(p_z, 0.5) == 135


def test_fact_5_greedy_edges() -> None:
    assert n_min(1.0, 0.9) == 1
    assert n_min(0.0, 0.9) is None
    with pytest.raises(ValueError):
        n_min(0.5, 1.0)


def test_fact_6_no_cancellation() -> None:
    assert prob_extracted_within(3, 0.5) == pytest.approx(0.875)
    assert prob_extracted_within(10**6, 1e-12) == pytest.approx(9.999995e-7, rel=1e-7)
    assert pytest.approx(9.99977e-7, rel=1e-5) == 1 - (1 - 1e-12) ** 10**6  # the naive way


def test_n_min_is_the_smallest_sufficient_n() -> None:
    assert n_min(1e-30, 0.5) == pytest.approx(math.log(2) * 1e30, rel=1e-9)  # no endless loop
    for p_z in (1e-9, 0.003, 0.3, 0.77, 0.999999):
        for p in (0.1, 0.5, 0.9, 0.999):
            n = n_min(p_z, p)
            assert prob_extracted_within(n, p_z) >= p - 1e-12
            assert n == 1 or prob_extracted_within(n - 1, p_z) < p


def test_windows() -> None:
    assert window_offsets(99, 50, 50, 0, None, 64) == []
    assert window_offsets(100, 50, 50, 0, None, 64) == [0]
    assert window_offsets(130, 50, 50, 0, 10, 64) == [0, 10, 20, 30]
    assert window_offsets(130, 50, 50, 5, 10, 2) == [5, 15]


def _stats(matches: list[bool], scheme_logps: list[float]) -> TokenStats:
    n = len(matches)
    return TokenStats(
        n_tokens=n + 1,
        logprobs=np.zeros(n),
        argmax_match=np.array(matches),
        margins=np.ones(n),
        scheme_logprobs={"s": np.array(scheme_logps)},
        nucleus_fragile={"s": np.zeros(n, dtype=bool)},
    )


def test_window_values() -> None:
    values = window_values(
        _stats([True, True, False, True], [-0.1, -0.2, -np.inf, -0.3]),
        start=0,
        suffix=4,
        scheme_names=["s"],
    )
    assert values["greedy_extracted"] is False and values["match_prefix_len"] == 2
    assert values["tf_match_fraction"] == 0.75
    assert values["log10_pz"] == {"s": None} and values["first_filtered_pos"] == {"s": 2}
    values = window_values(_stats([True] * 3, [math.log(0.5)] * 3), 0, 3, ["s"])
    assert values["log10_pz"]["s"] == pytest.approx(math.log10(0.125))


def test_rates_split_by_member_and_duplicates() -> None:
    def doc(extracted: bool, n: int | None, member: bool, dup: int) -> dict:
        return {
            "greedy_extracted": extracted,
            "n_min": {"s": {"0.5": n}},
            "member": member,
            "duplicates": dup,
        }

    values = [
        doc(True, 1, True, 16),
        doc(False, 30, True, 1),
        doc(False, None, False, 1),
        {"skipped": True, "member": False},
    ]
    summary = summarize_extraction(values, ["s"], [0.5], [1, 10, 100])
    assert summary["n_skipped"] == 1
    assert summary["members"]["greedy_rate"] == 0.5
    assert summary["members"]["rates"]["s"]["0.5"] == [0.5, 0.5, 1.0]
    assert summary["members"]["smallest_n_matching_greedy"]["s"]["0.5"] == 1
    assert summary["nonmembers"]["max_rate"]["s"] == 0.0
    assert summary["by_duplicates"]["16"]["greedy_rate"] == 1.0
