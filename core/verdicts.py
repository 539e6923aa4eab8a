"""Policy verdicts: named metrics read from an audit summary, compared with thresholds.

Names are stable and documented so a registry gate can be written against them:

| name | value |
| --- | --- |
| `extraction.greedy_extraction_rate` | share of records greedy decoding reproduces |
| `extraction.members.greedy_extraction_rate` | the same over members (`nonmembers` too) |
| `extraction.np_extraction_rate.<scheme>.<p>` | (n,p) rate at the largest n of the grid |
| `membership.<score>.auc` | ROC AUC of one score (`loss`, `zlib`, `minkpp_0.2`, ...) |
| `membership.<score>.tpr_at_1pct_fpr` | TPR at 1% FPR (`tpr_at_0.1pct_fpr` too) |
| `membership.best.auc` | the highest AUC over the scores |
| `membership.dataset_inference.p_value` | dataset inference: was the member set trained on? |
| `loss.mean_loss`, `loss.perplexity` | mean per-record loss, pooled perplexity |
| `retention.accuracy` | factoid accuracy of the audited version |
| `retention.retention`, `retention.forgetting_pp` | from the chain's first version to this one |
| `retention.previous.retention`, `retention.previous.forgetting_pp` | from the version before it |
| `kk_memorization.accuracy` | share of original puzzles solved |
| `kk_memorization.limem.<perturbation>` | LiMem under one perturbation (`perturbed_leaf`, ...) |
| `wilt.accuracy`, `wilt.total_points` | share of rules solved, WILT points |
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from core.relative import NOT_COMPARED, RelativeResult, is_relative

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}
TPR_LEVELS = {"tpr_at_1pct_fpr": "tpr_at_0.01_fpr", "tpr_at_0.1pct_fpr": "tpr_at_0.001_fpr"}


class UnknownMetric(ValueError):
    pass


def _dig(value: Any, *path: str) -> Any:
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _extraction(summary: Mapping[str, Any], rest: list[str]) -> float | None:
    if rest == ["greedy_extraction_rate"]:
        return _dig(summary, "all", "greedy_rate")
    if (
        len(rest) == 2
        and rest[0] in ("members", "nonmembers")
        and rest[1] == "greedy_extraction_rate"
    ):
        return _dig(summary, rest[0], "greedy_rate")
    if len(rest) >= 3 and rest[0] == "np_extraction_rate":
        scheme, p = rest[1], ".".join(rest[2:])
        curve = _dig(summary, "all", "rates", scheme, p)
        return curve[-1] if curve else None
    raise UnknownMetric(".".join(["extraction", *rest]))


def _membership(summary: Mapping[str, Any], rest: list[str]) -> float | None:
    if len(rest) < 2:
        raise UnknownMetric(".".join(["membership", *rest]))
    score, stat = ".".join(rest[:-1]), rest[-1]
    if score == "best" and stat == "auc":
        best = _best_score(summary)
        return None if best is None else _dig(summary, "scores", best, "auroc", "value")
    if score == "dataset_inference":
        if stat != "p_value":
            raise UnknownMetric(f"membership.{score}.{stat}")
        return _dig(summary, "dataset_inference", "p_value")
    entry = _dig(summary, "scores", score)
    if stat == "auc":
        return _dig(entry, "auroc", "value")
    if stat in TPR_LEVELS:
        return _dig(entry, TPR_LEVELS[stat], "value")
    raise UnknownMetric(f"membership.{score}.{stat}")


def _loss(summary: Mapping[str, Any], rest: list[str]) -> float | None:
    names = {"mean_loss": "mean_sample_loss", "perplexity": "perplexity"}
    if len(rest) == 1 and rest[0] in names:
        return summary.get(names[rest[0]])
    raise UnknownMetric(".".join(["loss", *rest]))


def _retention(summary: Mapping[str, Any], rest: list[str]) -> float | None:
    labels = [v.get("label") for v in summary.get("versions") or []]
    audited = labels[-1] if labels else None
    if rest == ["accuracy"]:
        return _dig(summary, "accuracy", audited) if audited else None
    if rest in (["retention"], ["forgetting_pp"]):
        return _dig(summary, "from_reference", audited, rest[0]) if audited else None
    if len(rest) == 2 and rest[0] == "previous" and rest[1] in ("retention", "forgetting_pp"):
        if len(labels) < 2:
            return None  # the first version: nothing before it to compare with
        return _dig(summary, "consecutive", f"{labels[-2]}->{audited}", rest[1])
    raise UnknownMetric(".".join(["retention", *rest]))


def _kk(summary: Mapping[str, Any], rest: list[str]) -> float | None:
    if rest == ["accuracy"]:
        return summary.get("accuracy")
    if len(rest) == 2 and rest[0] == "limem":
        return _dig(summary, "by_perturbation", rest[1], "limem")
    raise UnknownMetric(".".join(["kk_memorization", *rest]))


def _wilt(summary: Mapping[str, Any], rest: list[str]) -> float | None:
    if rest in (["accuracy"], ["total_points"]):
        return summary.get(rest[0])
    raise UnknownMetric(".".join(["wilt", *rest]))


READERS = {
    "extraction": _extraction,
    "membership": _membership,
    "loss": _loss,
    "retention": _retention,
    "kk_memorization": _kk,
    "wilt": _wilt,
}


def check_metric_name(name: str) -> None:
    """Raise UnknownMetric unless `name` is one the readers understand."""
    metric_value({kind: {} for kind in READERS}, name)


def metric_value(summary: Mapping[str, Any], name: str) -> float | None:
    """The named metric of an audit summary; None when the audit did not compute it, or
    computed no number (NaN, an infinity): stored, such a value reads null (core/db.py), so a
    verdict reached from the summary in memory and one read back agree."""
    kind, _, rest = name.partition(".")
    if kind not in READERS or not rest:
        raise UnknownMetric(name)
    value = READERS[kind](summary.get(kind) or {}, rest.split("."))
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


# Readings under which a membership metric says nothing either way (README, "Reading a
# membership verdict"): a condition on one ends `inconclusive`, never pass or fail.
WITHHELD = ("inconclusive", "underpowered")


def metric_reading(summary: Mapping[str, Any], name: str) -> str | None:
    """What the guard says of a membership metric (`stands`, `underpowered`, ...); None for
    metrics the guard does not read (extraction, loss, ...)."""
    kind, _, rest = name.partition(".")
    if kind != "membership":
        return None
    membership = summary.get("membership") or {}
    score = ".".join(rest.split(".")[:-1])
    if score == "best":
        best = _best_score(membership)
        return None if best is None else _dig(membership, "scores", best, "reading", "reading")
    if score == "dataset_inference":
        return _dig(membership, "dataset_inference", "reading", "reading")
    return _dig(membership, "scores", score, "reading", "reading")


def _best_score(membership: Mapping[str, Any]) -> str | None:
    scored = [
        (value, name)
        for name, entry in (membership.get("scores") or {}).items()
        if (value := _dig(entry, "auroc", "value")) is not None
    ]
    return max(scored)[1] if scored else None


def missing_reason(summary: Mapping[str, Any], name: str) -> str:
    """Why the named metric was not computed, as the check's summary says it (`not_computed`:
    "48 of 48 records shorter than prefix+suffix (100 tokens)")."""
    kind = name.partition(".")[0]
    part = summary.get(kind)
    if not isinstance(part, Mapping):
        return f"the audit has no {kind} summary"
    return str(part.get("not_computed") or f"{name} was not computed")


@dataclass(frozen=True)
class ThresholdResult:
    metric: str
    op: str
    threshold: float
    value: float | None
    passed: bool | None  # None: not computed, or withheld by its reading
    reading: str | None = None  # the guard's reading of a membership metric
    reason: str | None = None  # why a metric was not computed


# Worst first: the aggregate over a version's policies, and a verdict over its conditions,
# take the first status any part has. `error` (an audit that failed before its summary) and
# `none` rank with `unknown`.
SEVERITY = {"fail": 0, "unknown": 1, "error": 1, "none": 1, "inconclusive": 2, "pass": 3}


def worst(statuses: Sequence[str]) -> str:
    """The worst of some verdict statuses; `pass` when there are none (nothing was asked)."""
    return min(statuses, key=lambda status: SEVERITY.get(status, 1), default="pass")


# The verdict of an audit that is its own baseline and whose conditions all compare with the
# baseline: nothing was judged. It is recorded on the audit, never written to the registry over
# the version's verdict, never notified (core/notifications.py), and never promotes.
BASELINE = "baseline"


@dataclass(frozen=True)
class Verdict:
    status: str  # pass | fail | inconclusive | unknown | baseline
    results: list[ThresholdResult]
    promotion: str  # allowed | blocked
    comparisons: list[RelativeResult] = field(default_factory=list)
    baseline: dict[str, Any] | None = None  # the baseline as resolved when the audit started

    @property
    def reason(self) -> str | None:
        """Why an `unknown` verdict could not be reached, each distinct reason once:
        `unknown: 48 of 48 records shorter than prefix+suffix (100 tokens)`."""
        if self.status != "unknown":
            return None
        reasons = dict.fromkeys(r.reason for r in self.results if r.reason)
        reasons.update(
            dict.fromkeys(c.explanation for c in self.comparisons if c.status == "unknown")
        )
        return "unknown: " + "; ".join(reasons)

    @property
    def explanation(self) -> str | None:
        """Each relative condition's sentence, in the policy's order."""
        return " | ".join(c.explanation for c in self.comparisons) or None

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "status": self.status,
            "results": [asdict(r) for r in self.results],
            "promotion": self.promotion,
        }
        if self.comparisons:
            found["comparisons"] = [c.to_json() for c in self.comparisons]
            found["explanation"] = self.explanation
        if self.baseline is not None:
            found["baseline"] = self.baseline
        if self.reason:
            found["reason"] = self.reason
        return found


def _threshold_status(result: ThresholdResult) -> str:
    if result.passed is False:
        return "fail"
    if result.passed is None:
        return "inconclusive" if result.reading in WITHHELD else "unknown"
    return "pass"


def evaluate(
    summary: Mapping[str, Any],
    thresholds: Sequence[Mapping[str, Any]],
    on_inconclusive: str = "block",
    comparisons: Sequence[RelativeResult] = (),
    baseline: dict[str, Any] | None = None,
) -> Verdict:
    """`fail` if a condition on a metric that stands fails; else `unknown` if one could not be
    read; else `inconclusive` if one rests on a withheld metric; else `pass`. Only `pass`
    allows a promotion, and `inconclusive` too where the policy says `on_inconclusive: allow`
    (every other condition then passed: a metric not computed never slips through).

    A relative condition's comparison with the baseline (`comparisons`, worker/gates.py) counts
    with the same order; its `op`/`value`, where given, is checked here like any threshold. One
    `not_compared` (the audit is its own baseline) does not count: the absolute conditions
    decide, and with none the status is `baseline` (nothing judged, nothing promoted)."""
    results = []
    for rule in thresholds:
        if rule.get("op") is None:  # a relative condition alone: its comparison decides
            continue
        value = metric_value(summary, rule["metric"])
        reading = metric_reading(summary, rule["metric"])
        passed = None
        if value is not None and reading not in WITHHELD:
            passed = OPERATORS[rule["op"]](value, rule["value"])
        reason = missing_reason(summary, rule["metric"]) if value is None else None
        results.append(
            ThresholdResult(
                rule["metric"], rule["op"], rule["value"], value, passed, reading, reason
            )
        )
    judged = [c.status for c in comparisons if c.status != NOT_COMPARED]
    if not results and not judged and comparisons:
        status = BASELINE  # only relative conditions, and this audit is the baseline
    else:
        status = worst([_threshold_status(r) for r in results] + judged)
    allowed = status == "pass" or (status == "inconclusive" and on_inconclusive == "allow")
    return Verdict(
        status, results, "allowed" if allowed else "blocked", list(comparisons), baseline
    )


def has_relative(thresholds: Sequence[Mapping[str, Any]]) -> bool:
    return any(is_relative(rule) for rule in thresholds)


def pending_verdict(baseline: dict[str, Any]) -> dict[str, Any]:
    """The verdict of an audit whose baseline's audit has not ended: nothing is promoted yet."""
    return {
        "status": "pending",
        "results": [],
        "promotion": "blocked",
        "baseline": baseline,
        "reason": f"waiting for the baseline's audit {baseline.get('audit_id')} to end",
    }


def failed_verdict(reason: str) -> dict[str, Any]:
    """The verdict of an audit whose summary failed: nothing can pass or be promoted."""
    return {"status": "unknown", "results": [], "reason": reason, "promotion": "blocked"}
