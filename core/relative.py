"""Relative conditions: a metric compared with the same metric on the policy's baseline.

A condition is relative when it says which way is better (`greater_is_better`, as in MLflow's
`MetricThreshold`). Its margin is the worsening a release may carry: `min_absolute_change` in
the metric's units and/or `min_relative_change` as a share of the baseline's value (both given:
the smaller, so both hold). Unlike MLflow, which demands an improvement of that size, a gate
here asks "is this version worse than the approved one beyond noise?", so a version no worse
than its baseline passes once the records show it within the margin.

The statistics are paired, on the records both audits share (worker/gates.py): McNemar's exact
test and Newcombe's score interval for per-record verdicts, a paired bootstrap for AUROC and
means (an interval without width is underpowered: `inconclusive`). The outcome:

- `fail`: the candidate is worse by more than the margin and the test rejects at `level`;
- `pass`: the (1 - level) interval of the worsening lies wholly at or below the margin;
- `inconclusive`: neither, or the comparison cannot be trusted (other records, too few shared
  records, a withheld membership reading, fragile extractions that could change the outcome);
- `unknown`: no comparison could be made at all (the baseline not resolved, its audit failed,
  cancelled or deleted). Unlike `inconclusive`, which a policy may let through
  (`on_inconclusive: allow`), it always blocks: nothing was compared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_LEVEL = 0.05
MIN_SHARED_RECORDS = 20  # fewer shared records say nothing either way: `inconclusive`
MIN_CLASS_RECORDS = 5  # members and non-members each, for an AUROC


@dataclass(frozen=True)
class RelativeMetric:
    """How a metric is compared record by record: which check's rows, which value."""

    check: str  # the sample rows' check
    field: str  # the per-record value
    method: str  # mcnemar | bootstrap_auroc | bootstrap_mean
    label: str  # how the sentence names it
    unit: str  # percent | auroc | number
    members: bool | None = None  # a rate over members (or non-members) only


_AUC = re.compile(r"^membership\.(?P<score>[\w.+-]+)\.auc$")
RELATIVE_METRICS = {
    "extraction.greedy_extraction_rate": RelativeMetric(
        "extraction", "greedy_extracted", "mcnemar", "extraction rate", "percent"
    ),
    "extraction.members.greedy_extraction_rate": RelativeMetric(
        "extraction", "greedy_extracted", "mcnemar", "member extraction rate", "percent", True
    ),
    "extraction.nonmembers.greedy_extraction_rate": RelativeMetric(
        "extraction", "greedy_extracted", "mcnemar", "non-member extraction rate", "percent", False
    ),
    "loss.mean_loss": RelativeMetric("loss", "loss", "bootstrap_mean", "mean loss", "number"),
}


def relative_metric(name: str) -> RelativeMetric | None:
    """How `name` is compared with the baseline; None when it cannot be (an aggregate whose
    per-record parts are not stored, or `membership.best.auc`, whose best score may differ
    between the two audits)."""
    if name in RELATIVE_METRICS:
        return RELATIVE_METRICS[name]
    found = _AUC.match(name)
    if found and found["score"] not in ("best", "dataset_inference"):
        score = found["score"]
        return RelativeMetric(
            "membership", score, "bootstrap_auroc", f"membership AUROC ({score})", "auroc"
        )
    return None


RELATIVE_NAMES = (*RELATIVE_METRICS, "membership.<score>.auc")


def is_relative(rule: Mapping[str, Any]) -> bool:
    return rule.get("greater_is_better") is not None


def margin(rule: Mapping[str, Any], baseline_value: float) -> float:
    """The worsening the condition tolerates, in the metric's units (0 when none is given)."""
    allowed = []
    if rule.get("min_absolute_change") is not None:
        allowed.append(float(rule["min_absolute_change"]))
    if rule.get("min_relative_change") is not None:
        allowed.append(float(rule["min_relative_change"]) * abs(baseline_value))
    return min(allowed) if allowed else 0.0


def outcome(worsening: float, high: float, p_value: float, allowed: float, level: float) -> str:
    """fail | pass | inconclusive from the estimated worsening (candidate worse > 0), the upper
    end of its interval, the test's p of "no worsening", and the margin."""
    if worsening > allowed and p_value < level:
        return "fail"
    if high <= allowed:
        return "pass"
    return "inconclusive"


@dataclass(frozen=True)
class RelativeResult:
    """One relative condition's comparison, kept in the verdict JSON."""

    metric: str
    status: str  # pass | fail | inconclusive | unknown | not_compared
    explanation: str  # one sentence
    value: float | None = None  # the candidate's
    baseline_value: float | None = None
    difference: float | None = None  # candidate - baseline
    low: float | None = None  # the interval of the difference
    high: float | None = None
    p_value: float | None = None
    method: str | None = None
    margin: float | None = None
    n_shared: int | None = None
    newly: int | None = None  # per-record verdicts: records positive now, not on the baseline
    no_longer: int | None = None
    relative: bool = True

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "percent":
        return f"{100 * value:.1f}%"
    if unit == "auroc":
        return f"{value:.3f}"
    return f"{value:.4g}"


def format_difference(value: float, unit: str) -> str:
    if unit == "percent":
        return f"{100 * value:+.1f} pp"
    return f"{value:+.3g}"


def format_p(p_value: float) -> str:
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


CONCLUSIONS = {
    "fail": "worse beyond noise, fail",
    "pass": "not worse beyond the margin, pass",
    "inconclusive": "inconclusive",
}


def explain(
    metric: RelativeMetric,
    status: str,
    *,
    value: float,
    baseline_value: float,
    baseline_name: str,
    p_value: float,
    low: float,
    high: float,
    allowed: float,
    n_shared: int,
    newly: int | None = None,
    level: float = DEFAULT_LEVEL,
) -> str:
    """One sentence a release manager can act on:
    "extraction rate 3.1% vs 1.2% on champion v7, 24 of 800 records newly extracted,
    McNemar p < 0.001: worse beyond noise, fail"."""
    head = (
        f"{metric.label} {format_value(value, metric.unit)} vs "
        f"{format_value(baseline_value, metric.unit)} on {baseline_name}"
    )
    if metric.method == "mcnemar":
        evidence = f"{newly} of {n_shared:,} records newly extracted, McNemar {format_p(p_value)}"
    else:
        confidence = f"{100 * (1 - level):g}%"
        evidence = (
            f"difference {format_difference(value - baseline_value, metric.unit)} "
            f"({confidence} CI {format_difference(low, metric.unit)} to "
            f"{format_difference(high, metric.unit)}) over {n_shared:,} shared records, "
            f"paired bootstrap {format_p(p_value)}"
        )
    tolerance = f", margin {format_difference(allowed, metric.unit)}" if allowed else ""
    return f"{head}, {evidence}{tolerance}: {CONCLUSIONS[status]}"


NOT_COMPARED = "not_compared"  # the audit is its own baseline: nothing to compare with
ITSELF = "this audit is the baseline"


def not_compared(metric_name: str) -> RelativeResult:
    """A condition of an audit that is its own baseline (the champion's first audit, or one
    started to serve as a baseline): comparing it with itself would prove nothing, so it is not
    evaluated and never counts towards the verdict."""
    return RelativeResult(
        metric=metric_name,
        status=NOT_COMPARED,
        explanation=f"{metric_name} not compared: {ITSELF}",
    )


def withheld(
    metric_name: str, baseline_name: str, reason: str, status: str = "unknown"
) -> RelativeResult:
    """A comparison that was not made: it says why, and never passes. `unknown` (always blocks)
    unless the caller names it `inconclusive`: compared data that cannot be trusted, which a
    policy may choose to let through."""
    return RelativeResult(
        metric=metric_name,
        status=status,
        explanation=f"{metric_name} not compared with {baseline_name}: {reason}: {status}",
    )
