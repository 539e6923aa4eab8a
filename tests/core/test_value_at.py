"""The records table's sort columns read values whose names hold dots of their own."""

from __future__ import annotations

from core.check_kinds import value_at


def test_a_name_with_a_dot_is_read_whole() -> None:
    values = {"loss": 2.5, "minkpp_0.2": -1.25, "mink_0.2": 0.75}
    assert value_at(values, "minkpp_0.2") == -1.25
    assert value_at(values, "mink_0.2") == 0.75


def test_a_nested_path_reaches_names_with_dots() -> None:
    values = {"bleu": {"t0.8": 0.5, "greedy": 0.9}, "coverage_share": {"topk_0.9": 0.1}}
    assert value_at(values, "bleu.t0.8") == 0.5
    assert value_at(values, "bleu.greedy") == 0.9
    assert value_at(values, "coverage_share.topk_0.9") == 0.1


def test_a_missing_path_is_none() -> None:
    assert value_at({"bleu": {"greedy": 0.9}}, "bleu.t0.8") is None
    assert value_at({"bleu": 0.9}, "bleu.greedy") is None
    assert value_at({}, "loss") is None
