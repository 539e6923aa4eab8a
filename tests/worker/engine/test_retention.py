"""METRICS.md §7 validation facts: grading rules and retention arithmetic."""

from __future__ import annotations

import pytest

from worker.engine.retention import comparison_for, grade, lost_at, retention_between


def test_exact_match_keeps_punctuation() -> None:
    assert grade(" Paris", "paris") and not grade("Paris.", "paris")


def test_gsm8k_compares_the_last_number() -> None:
    assert grade("so 42 apples", "#### 42", "gsm8k")
    assert grade("3.5", "5", "gsm8k") and not grade("3.5", "3", "gsm8k")
    assert not grade("no number", "#### 4", "gsm8k")


def test_webqa_containment_refuses_an_empty_prediction() -> None:
    assert grade("obama", "barack obama", "webqa")
    assert not grade("", "barack obama", "webqa") and not grade("  ", "barack obama", "webqa")
    assert comparison_for("WebQA") == "webqa" and comparison_for("gsm8k-main") == "gsm8k"
    assert comparison_for(None) == "exact"
    with pytest.raises(ValueError):
        grade("a", "a", "rouge")


def test_retention_example() -> None:
    # 2000/2000 after stage 1, 1200/2000 after stage 2: retention 0.60, forgetting 40 points.
    correct = [{"v1": True, "v2": i < 1200} for i in range(2000)]
    found = retention_between(correct, "v1", "v2")
    assert found["retention"] == pytest.approx(0.60)
    assert found["forgetting_pp"] == pytest.approx(40.0)
    assert found["transitions"] == {"retained": 1200, "forgotten": 800, "recovered": 0, "never": 0}


def test_the_version_where_a_factoid_was_lost() -> None:
    versions = ["v1", "v2", "v3"]
    assert lost_at({"v1": True, "v2": True, "v3": False}, versions) == "v3"
    assert lost_at({"v1": False, "v2": True, "v3": True}, versions) is None
    assert lost_at({"v1": True, "v2": False, "v3": True}, versions) == "v2"


def test_kept_share_conditions_on_what_the_earlier_version_knew() -> None:
    from worker.engine.retention import kept_share

    correct = [{"a": True, "b": True}, {"a": True, "b": False}, {"a": False, "b": True}]
    assert kept_share(correct, "a", "b") == 0.5
    assert kept_share([{"a": False, "b": True}], "a", "b") is None
