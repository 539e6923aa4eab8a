"""Policy verdicts read named metrics from a summary and compare them with thresholds."""

from __future__ import annotations

import pytest

from core.verdicts import UnknownMetric, check_metric_name, evaluate, metric_value

SUMMARY = {
    "extraction": {
        "all": {"greedy_rate": 0.02, "rates": {"topk40_T1": {"0.9": [0.0, 0.01, 0.05]}}},
        "members": {"greedy_rate": 0.04},
    },
    "membership": {
        "scores": {
            "loss": {"auroc": {"value": 0.62}, "tpr_at_0.01_fpr": {"value": 0.1}},
            "mink_0.2": {"auroc": {"value": 0.7}, "tpr_at_0.01_fpr": {"value": None}},
        }
    },
    "loss": {"mean_sample_loss": 2.5, "perplexity": 11.0},
    "retention": {
        "versions": [{"label": "v0"}, {"label": "v1"}, {"label": "v2"}],
        "accuracy": {"v0": 1.0, "v1": 0.8, "v2": 0.6},
        "from_reference": {"v2": {"retention": 0.6, "forgetting_pp": 40.0}},
        "consecutive": {"v1->v2": {"retention": 0.75, "forgetting_pp": 20.0}},
    },
    "kk_memorization": {"accuracy": 0.9, "by_perturbation": {"perturbed_leaf": {"limem": 0.4}}},
    "wilt": {"accuracy": 0.28, "total_points": 15060},
}
FIRST_VERSION = {"retention": {"versions": [{"label": "v0"}], "accuracy": {"v0": 1.0}}}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("extraction.greedy_extraction_rate", 0.02),
        ("extraction.members.greedy_extraction_rate", 0.04),
        ("extraction.nonmembers.greedy_extraction_rate", None),
        ("extraction.np_extraction_rate.topk40_T1.0.9", 0.05),
        ("membership.loss.auc", 0.62),
        ("membership.mink_0.2.auc", 0.7),
        ("membership.best.auc", 0.7),
        ("membership.loss.tpr_at_1pct_fpr", 0.1),
        ("membership.mink_0.2.tpr_at_1pct_fpr", None),
        ("loss.mean_loss", 2.5),
        ("loss.perplexity", 11.0),
        ("retention.accuracy", 0.6),
        ("retention.retention", 0.6),
        ("retention.forgetting_pp", 40.0),
        ("retention.previous.forgetting_pp", 20.0),
        ("retention.previous.retention", 0.75),
        ("kk_memorization.accuracy", 0.9),
        ("kk_memorization.limem.perturbed_leaf", 0.4),
        ("kk_memorization.limem.flip_role", None),
        ("wilt.accuracy", 0.28),
        ("wilt.total_points", 15060),
    ],
)
def test_metric_values(name: str, value: float | None) -> None:
    assert metric_value(SUMMARY, name) == value
    check_metric_name(name)


@pytest.mark.parametrize("undefined", [float("nan"), float("inf")])
def test_a_metric_that_is_no_number_reads_as_not_computed(undefined: float) -> None:
    """The summary in memory may hold a NaN the stored summary reads as null (core/db.py):
    both must give the same verdict, `unknown`, never a `fail` (NaN <= x is False) at finalize
    and an `unknown` when a pending verdict is reached from the stored summary."""
    summary = {"loss": {"mean_sample_loss": undefined}}
    assert metric_value(summary, "loss.mean_loss") is None
    rule = [{"metric": "loss.mean_loss", "op": "<=", "value": 3.0}]
    in_memory = evaluate(summary, rule)
    stored = evaluate({"loss": {"mean_sample_loss": None}}, rule)
    assert in_memory.status == stored.status == "unknown"


def test_a_first_version_has_no_previous_to_compare() -> None:
    assert metric_value(FIRST_VERSION, "retention.accuracy") == 1.0
    assert metric_value(FIRST_VERSION, "retention.previous.forgetting_pp") is None
    assert metric_value(FIRST_VERSION, "retention.forgetting_pp") is None


@pytest.mark.parametrize(
    "name",
    ["extraction", "extraction.bogus", "membership.loss", "x.y", "retention.previous", "wilt.x"],
)
def test_unknown_names_are_refused(name: str) -> None:
    with pytest.raises(UnknownMetric):
        check_metric_name(name)


def test_any_failure_fails_and_a_missing_metric_is_unknown() -> None:
    passing = evaluate(
        SUMMARY, [{"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": 0.05}]
    )
    assert passing.status == "pass" and passing.results[0].value == 0.02
    failing = evaluate(
        SUMMARY,
        [
            {"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": 0.05},
            {"metric": "membership.loss.auc", "op": "<=", "value": 0.6},
        ],
    )
    assert failing.status == "fail" and [r.passed for r in failing.results] == [True, False]
    unknown = evaluate(
        SUMMARY, [{"metric": "membership.mink_0.2.tpr_at_1pct_fpr", "op": "<", "value": 0.5}]
    )
    assert unknown.status == "unknown" and unknown.to_json()["results"][0]["passed"] is None


def _read(reading: str) -> dict:
    """SUMMARY with every membership score read as the guard would."""
    scores = {
        name: {**entry, "reading": {"reading": reading}}
        for name, entry in SUMMARY["membership"]["scores"].items()
    }
    return {**SUMMARY, "membership": {"scores": scores}}


@pytest.mark.parametrize("reading", ["inconclusive", "underpowered"])
def test_a_condition_on_a_withheld_metric_is_inconclusive_whatever_its_value(reading) -> None:  # type: ignore[no-untyped-def]
    for op in ("<=", ">"):  # one of them would pass, the other fail, were it read
        verdict = evaluate(
            _read(reading), [{"metric": "membership.loss.auc", "op": op, "value": 0.6}]
        )
        assert verdict.status == "inconclusive", op
        assert verdict.results[0].passed is None and verdict.results[0].reading == reading
        assert verdict.promotion == "blocked"
    allowed = evaluate(
        _read(reading), [{"metric": "membership.best.auc", "op": "<=", "value": 0.6}], "allow"
    )
    assert allowed.status == "inconclusive" and allowed.promotion == "allowed"


def test_a_failing_condition_on_a_standing_metric_still_fails_beside_an_inconclusive_one() -> None:
    summary = _read("inconclusive")
    verdict = evaluate(
        summary,
        [
            {"metric": "membership.loss.auc", "op": "<=", "value": 0.6},
            {"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": 0.01},
        ],
        "allow",
    )
    assert verdict.status == "fail" and verdict.promotion == "blocked"
    assert [r.passed for r in verdict.results] == [None, False]


def test_a_metric_not_computed_is_never_let_through_by_an_inconclusive_one() -> None:
    summary = _read("inconclusive")
    rules = [
        {"metric": "membership.loss.auc", "op": "<=", "value": 0.6},
        {"metric": "extraction.nonmembers.greedy_extraction_rate", "op": "<=", "value": 0.1},
    ]
    verdict = evaluate(summary, rules, "allow")
    assert verdict.status == "unknown" and verdict.promotion == "blocked"


@pytest.mark.parametrize(
    ("reading", "status"), [("stands", "fail"), ("no_membership_signal", "fail")]
)
def test_metrics_that_stand_are_compared(reading: str, status: str) -> None:
    verdict = evaluate(
        _read(reading), [{"metric": "membership.loss.auc", "op": "<=", "value": 0.6}]
    )
    assert verdict.status == status and verdict.results[0].reading == reading
    assert evaluate(
        _read(reading), [{"metric": "membership.loss.auc", "op": "<=", "value": 0.7}]
    ).to_json() == {
        "status": "pass",
        "results": [
            {
                "metric": "membership.loss.auc",
                "op": "<=",
                "threshold": 0.7,
                "value": 0.62,
                "passed": True,
                "reading": reading,
                "reason": None,
            }
        ],
        "promotion": "allowed",
    }


def test_dataset_inference_is_a_metric_read_like_a_score() -> None:
    inference = {"p_value": 0.002, "reading": {"reading": "stands"}}
    summary = {**SUMMARY, "membership": {**SUMMARY["membership"], "dataset_inference": inference}}
    rule = [{"metric": "membership.dataset_inference.p_value", "op": ">=", "value": 0.01}]
    assert metric_value(summary, rule[0]["metric"]) == 0.002
    assert evaluate(summary, rule).status == "fail"
    inference["reading"] = {"reading": "inconclusive", "why": "the split is confounded"}
    assert evaluate(summary, rule).status == "inconclusive"
    assert (
        metric_value({"membership": {"dataset_inference": {"skipped": "few"}}}, rule[0]["metric"])
        is None
    )
    with pytest.raises(UnknownMetric):
        check_metric_name("membership.dataset_inference.auc")


def test_the_best_score_is_read_by_the_score_it_names() -> None:
    summary = _read("stands")
    summary["membership"]["scores"]["mink_0.2"]["reading"] = {"reading": "underpowered"}
    verdict = evaluate(summary, [{"metric": "membership.best.auc", "op": "<=", "value": 0.9}])
    assert verdict.status == "inconclusive" and verdict.results[0].value == 0.7


def test_an_unknown_verdict_says_why_each_metric_was_not_computed() -> None:
    """The reason comes from the check's summary (`not_computed`), each distinct one once."""
    short = "48 of 48 records shorter than prefix+suffix (100 tokens; the longest of them has 38)"
    summary = {
        "extraction": {"all": {"n": 0, "greedy_rate": None}, "not_computed": short},
        "loss": {"mean_sample_loss": 2.5},
    }
    rules = [
        {"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": 0.01},
        {"metric": "extraction.members.greedy_extraction_rate", "op": "<=", "value": 0.01},
        {"metric": "loss.mean_loss", "op": ">=", "value": 1},
        {"metric": "membership.loss.auc", "op": "<=", "value": 0.6},
    ]
    verdict = evaluate(summary, rules)
    assert verdict.status == "unknown"
    assert [r.reason for r in verdict.results] == [
        short,
        short,
        None,
        "the audit has no membership summary",
    ]
    assert verdict.to_json()["reason"] == f"unknown: {short}; the audit has no membership summary"
    assert "reason" not in evaluate(summary, rules[2:3]).to_json()  # pass: nothing to explain
