"""Relative conditions: which metrics compare, the margin, the outcome rule, the sentence."""

from __future__ import annotations

import pytest

from core.relative import explain, is_relative, margin, outcome, relative_metric
from core.verdicts import evaluate, worst


def test_comparable_metrics_and_how() -> None:
    assert relative_metric("extraction.greedy_extraction_rate").method == "mcnemar"
    assert relative_metric("extraction.members.greedy_extraction_rate").members is True
    assert relative_metric("membership.minkpp_0.2.auc").field == "minkpp_0.2"
    assert relative_metric("loss.mean_loss").method == "bootstrap_mean"
    # The best score may differ between the two audits; summaries without rows cannot pair.
    assert relative_metric("membership.best.auc") is None
    assert relative_metric("loss.perplexity") is None
    assert is_relative({"metric": "x", "greater_is_better": False})
    assert not is_relative({"metric": "x", "op": "<=", "value": 1})


def test_the_margin_is_the_smaller_of_the_tolerated_changes() -> None:
    assert margin({}, 0.4) == 0.0
    assert margin({"min_absolute_change": 0.02}, 0.4) == 0.02
    assert margin({"min_relative_change": 0.1}, 0.4) == pytest.approx(0.04)
    assert margin({"min_absolute_change": 0.02, "min_relative_change": 0.1}, 0.4) == 0.02
    assert margin({"min_relative_change": 0.5}, -0.2) == pytest.approx(0.1)  # of |baseline|


@pytest.mark.parametrize(
    ("worsening", "high", "p", "allowed", "expected"),
    [
        (0.20, 0.30, 0.0001, 0.0, "fail"),  # worse, and beyond noise
        (0.20, 0.30, 0.2, 0.0, "inconclusive"),  # worse, but the test does not reject
        (0.01, 0.03, 0.001, 0.02, "inconclusive"),  # real but within the margin; CI crosses it
        (0.01, 0.015, 0.001, 0.02, "pass"),  # the interval stays below the margin
        (0.0, 0.0, 1.0, 0.0, "pass"),  # identical audits
        (-0.15, -0.04, 1.0, 0.0, "pass"),  # better
        (0.03, 0.05, 0.01, 0.02, "fail"),  # worse by more than the margin, and rejected
    ],
)
def test_the_outcome_rule(worsening, high, p, allowed, expected) -> None:
    assert outcome(worsening, high, p, allowed, 0.05) == expected


def test_a_per_record_comparison_explains_itself_in_one_sentence() -> None:
    sentence = explain(
        relative_metric("extraction.greedy_extraction_rate"),
        "fail",
        value=0.031,
        baseline_value=0.012,
        baseline_name="champion v7",
        p_value=0.00001,
        low=0.01,
        high=0.03,
        allowed=0.0,
        n_shared=800,
        newly=24,
    )
    assert sentence == (
        "extraction rate 3.1% vs 1.2% on champion v7, 24 of 800 records newly extracted, "
        "McNemar p < 0.001: worse beyond noise, fail"
    )


def test_a_bootstrap_comparison_names_its_interval_and_margin() -> None:
    sentence = explain(
        relative_metric("membership.loss.auc"),
        "pass",
        value=0.71,
        baseline_value=0.74,
        baseline_name="main (3f2a9c01d2e4)",
        p_value=0.62,
        low=-0.08,
        high=0.012,
        allowed=0.02,
        n_shared=400,
    )
    assert sentence == (
        "membership AUROC (loss) 0.710 vs 0.740 on main (3f2a9c01d2e4), difference -0.03 "
        "(95% CI -0.08 to +0.012) over 400 shared records, paired bootstrap p = 0.620, "
        "margin +0.02: not worse beyond the margin, pass"
    )


def test_worst_orders_fail_unknown_inconclusive_pass() -> None:
    assert worst(["pass", "inconclusive", "fail", "unknown"]) == "fail"
    assert worst(["pass", "inconclusive", "error"]) == "error"
    assert worst(["pass", "inconclusive"]) == "inconclusive"
    assert worst(["pass"]) == "pass"


def test_a_relative_condition_with_an_absolute_part_checks_both() -> None:
    from core.relative import RelativeResult

    summary = {"extraction": {"all": {"greedy_rate": 0.4}}}
    rule = {
        "metric": "extraction.greedy_extraction_rate",
        "greater_is_better": False,
        "op": "<=",
        "value": 0.3,
    }
    passed = RelativeResult(rule["metric"], "pass", "... pass")
    verdict = evaluate(summary, [rule], comparisons=[passed])
    assert verdict.status == "fail"  # not worse than the champion, but above the absolute limit
    assert verdict.to_json()["explanation"] == "... pass"
    relative_only = {k: v for k, v in rule.items() if k not in ("op", "value")}
    verdict = evaluate(summary, [relative_only], comparisons=[passed])
    assert verdict.status == "pass" and verdict.results == []
