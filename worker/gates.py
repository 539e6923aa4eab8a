"""Release gates: a policy audit's relative conditions, compared with its baseline's audit.

The comparison is paired, on the records both audits scored (same `sample_index`, same dataset
sha256; core/relative.py says how each metric is compared and what the outcome means). A
candidate whose baseline's audit is still running ends with a `pending` verdict; the first
process to see both ended reaches it, by one conditional UPDATE of `verdict_pending`, and only
that process announces it (worker/tasks.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.baselines import code_version
from core.db import Database
from core.models import Audit, AuditPolicy, AuditStatus, SampleResult
from core.relative import (
    DEFAULT_LEVEL,
    MIN_CLASS_RECORDS,
    MIN_SHARED_RECORDS,
    RelativeMetric,
    RelativeResult,
    explain,
    is_relative,
    margin,
    not_compared,
    outcome,
    relative_metric,
    withheld,
)
from core.verdicts import WITHHELD, evaluate, metric_reading, metric_value, pending_verdict
from worker.engine.paired import (
    PairedInterval,
    auroc,
    mcnemar_exact_p,
    paired_bootstrap,
    paired_proportions_interval,
)

BOOTSTRAP_SEED = 0  # recorded in each comparison, so a verdict can be recomputed exactly
BOOTSTRAP_RESAMPLES = 2000
# Compared, but on data that cannot be trusted; a comparison never made is `unknown` instead
# (withheld's default), which no policy lets through.
INCONCLUSIVE = "inconclusive"


def baseline_name(found: Mapping[str, Any]) -> str:
    """How a sentence names the baseline: `champion v7`, `main (3f2a9c01d2e4)`, `audit 1a2b3c`."""
    ref, version = str(found.get("ref") or ""), str(found.get("version") or "")
    if ref.startswith("audit:"):
        name = f"audit {ref[len('audit:') :][:12]}"
    elif version.isdigit():
        name = f"v{version}" if ref == version else f"{ref} v{version}"
    elif version:
        name = f"{ref} ({version[:12]})" if ref != version else version[:12]
    else:
        name = ref or "the baseline"
    return name


def _rows(session: Session, audit_id: str, check: str) -> dict[int, dict[str, Any]]:
    rows = session.execute(
        select(SampleResult.sample_index, SampleResult.values).where(
            SampleResult.audit_id == audit_id, SampleResult.check == check
        )
    )
    return {index: values for index, values in rows}


def _usable(row: Mapping[str, Any], metric: RelativeMetric) -> bool:
    if row.get("skipped") or row.get(metric.field) is None:
        return False
    if metric.members is not None and row.get("member") is not metric.members:
        return False
    return metric.method != "bootstrap_auroc" or isinstance(row.get("member"), bool)


def compare(
    session: Session,
    rule: Mapping[str, Any],
    candidate: tuple[Audit, Mapping[str, Any]],
    baseline: tuple[Audit, Mapping[str, Any], str],
    name: str,
) -> RelativeResult:
    """One relative condition: the candidate audit (and its summary) against the baseline's
    (its summary and status)."""
    metric_name = rule["metric"]
    metric = relative_metric(metric_name)
    (audit, summary), (base, base_summary, base_status) = candidate, baseline
    if metric is None:
        return withheld(metric_name, name, "not comparable record by record")
    if base_status != AuditStatus.SUCCEEDED:
        return withheld(metric_name, name, f"its audit {base.id} {base_status}")
    if audit.dataset_sha256 != base.dataset_sha256:
        return withheld(
            metric_name, name, "it was audited on other records (dataset differs)", INCONCLUSIVE
        )
    confounded = _confounded(audit, base)
    if confounded:
        return withheld(metric_name, name, f"confounded: {confounded}", INCONCLUSIVE)
    for which, found in (("this version", summary), ("the baseline", base_summary)):
        reading = metric_reading(found, metric_name)
        if reading in WITHHELD:
            return withheld(
                metric_name, name, f"the membership guard reads {which} {reading}", INCONCLUSIVE
            )
        if metric_value(found, metric_name) is None:
            return withheld(metric_name, name, f"{which} has no {metric_name}")
    ours, theirs = _rows(session, audit.id, metric.check), _rows(session, base.id, metric.check)
    shared = sorted(
        i
        for i in ours.keys() & theirs.keys()
        if _usable(ours[i], metric) and _usable(theirs[i], metric)
    )
    if len(shared) < MIN_SHARED_RECORDS:
        return withheld(
            metric_name,
            name,
            f"only {len(shared)} shared records (at least {MIN_SHARED_RECORDS})",
            INCONCLUSIVE,
        )
    if metric.method == "mcnemar":
        return _per_record_verdicts(rule, metric, ours, theirs, shared, name)
    return _bootstrap(rule, metric, ours, theirs, shared, name)


def _confounded(audit: Audit, base: Audit) -> str | None:
    """Why the baseline's records cannot be set beside the candidate's, or None: a difference
    in what ran (other checks or params, another code version) would be read as the model's.
    A fixed `audit:<id>` baseline is never re-run, so it is checked here, not only on reuse."""
    if base.checks != audit.checks:
        return "the baseline ran other checks"
    theirs, ours = code_version(base), code_version(audit)
    if theirs != ours:
        return f"the baseline ran code version {theirs} (this audit {ours})"
    return None


def _level(rule: Mapping[str, Any]) -> float:
    return float(rule.get("level") or DEFAULT_LEVEL)


def _per_record_verdicts(
    rule: Mapping[str, Any],
    metric: RelativeMetric,
    ours: Mapping[int, dict],
    theirs: Mapping[int, dict],
    shared: list[int],
    name: str,
) -> RelativeResult:
    """McNemar's exact test on the records that changed, Newcombe's score interval of the
    difference of the rates; fragile records (within rounding error of flipping) that could
    change the outcome make it inconclusive."""
    now = np.array([bool(ours[i][metric.field]) for i in shared])  # (N,)
    before = np.array([bool(theirs[i][metric.field]) for i in shared])
    # Each side's own fragile records: a record near flipping in one audit says nothing about
    # the other audit's reading of it.
    fragile_now = np.array([bool(ours[i].get("fragile")) for i in shared])
    fragile_before = np.array([bool(theirs[i].get("fragile")) for i in shared])
    fragile = fragile_now | fragile_before
    better_high = bool(rule["greater_is_better"])
    level = _level(rule)
    allowed = margin(rule, float(before.mean()))

    def judged(now: np.ndarray, before: np.ndarray) -> tuple[str, float, float, float]:
        """(status, McNemar p, the interval of candidate - baseline)."""
        newly, no_longer = int((now & ~before).sum()), int((~now & before).sum())
        both, neither = int((now & before).sum()), int((~now & ~before).sum())
        worse, better = (no_longer, newly) if better_high else (newly, no_longer)
        p_value = mcnemar_exact_p(worse, better)
        # A score interval, not a bootstrap: with no record changed every resample shows no
        # difference, and a [0, 0] interval would pass 20 unchanged records at margin 0.
        low, high = paired_proportions_interval(both, newly, no_longer, neither, level)
        worsening = (worse - better) / len(now)
        status = outcome(worsening, -low if better_high else high, p_value, allowed, level)
        return status, p_value, low, high

    status, p_value, low, high = judged(now, before)
    if fragile.any():
        # The worst case for the candidate: its fragile records flipped to the bad side, the
        # baseline's to the good side, each in its own column; then the best case. An outcome
        # either could change is not one to act on.
        positive_is_bad = not better_high
        worst = judged(
            _flipped(now, fragile_now, positive_is_bad),
            _flipped(before, fragile_before, not positive_is_bad),
        )[0]
        best = judged(
            _flipped(now, fragile_now, not positive_is_bad),
            _flipped(before, fragile_before, positive_is_bad),
        )[0]
        if {worst, best} != {status}:
            status = "inconclusive"
    newly, no_longer = int((now & ~before).sum()), int((~now & before).sum())
    sentence = explain(
        metric,
        status,
        value=float(now.mean()),
        baseline_value=float(before.mean()),
        baseline_name=name,
        p_value=p_value,
        low=low,
        high=high,
        allowed=allowed,
        n_shared=len(shared),
        newly=newly,
        level=level,
    )
    if fragile.any() and status == "inconclusive":
        sentence += f" ({int(fragile.sum())} fragile records could change the outcome)"
    return RelativeResult(
        metric=rule["metric"],
        status=status,
        explanation=sentence,
        value=float(now.mean()),
        baseline_value=float(before.mean()),
        difference=float(now.mean() - before.mean()),
        low=low,
        high=high,
        p_value=p_value,
        method="mcnemar",
        margin=allowed,
        n_shared=len(shared),
        newly=newly,
        no_longer=no_longer,
    )


def _flipped(verdicts: np.ndarray, fragile: np.ndarray, positive: bool) -> np.ndarray:
    """`verdicts` with the `fragile` records set positive (or negative)."""
    return verdicts | fragile if positive else verdicts & ~fragile


def _bootstrap(
    rule: Mapping[str, Any],
    metric: RelativeMetric,
    ours: Mapping[int, dict],
    theirs: Mapping[int, dict],
    shared: list[int],
    name: str,
) -> RelativeResult:
    """A seeded paired bootstrap of an AUROC (resampled within members and non-members) or a
    mean."""
    now = np.array([float(ours[i][metric.field]) for i in shared])  # (N,)
    before = np.array([float(theirs[i][metric.field]) for i in shared])
    strata = None
    statistic = _mean
    if metric.method == "bootstrap_auroc":
        strata = np.array([1 if ours[i]["member"] else 0 for i in shared])
        members = int(strata.sum())
        if min(members, len(strata) - members) < MIN_CLASS_RECORDS:
            return withheld(
                rule["metric"],
                name,
                f"{members} members and {len(strata) - members} non-members shared "
                f"(at least {MIN_CLASS_RECORDS} each)",
                INCONCLUSIVE,
            )
        statistic = _auroc_with(strata)
    level, better_high = _level(rule), bool(rule["greater_is_better"])
    sign = -1.0 if better_high else 1.0
    interval = paired_bootstrap(
        lambda idx: sign * (statistic(now, idx) - statistic(before, idx)),
        len(shared),
        level=level,
        n_resamples=BOOTSTRAP_RESAMPLES,
        seed=BOOTSTRAP_SEED,
        strata=strata,
    )
    everyone = np.arange(len(shared))
    value, baseline_value = float(statistic(now, everyone)), float(statistic(before, everyone))
    allowed = margin(rule, baseline_value)
    p_value = interval.p_above_zero  # how often a resample shows no worsening
    status = outcome(interval.estimate, interval.high, p_value, allowed, level)
    # Every resample gave the same difference (no record differs, say): the percentile interval
    # has no width, which says nothing about how large a difference the records could hide.
    underpowered = interval.high == interval.low
    if underpowered:
        status = "inconclusive"
    low, high = _difference_interval(interval, better_high)
    sentence = explain(
        metric,
        status,
        value=value,
        baseline_value=baseline_value,
        baseline_name=name,
        p_value=p_value,
        low=low,
        high=high,
        allowed=allowed,
        n_shared=len(shared),
        level=level,
    )
    if underpowered:
        sentence += " (underpowered: every resample gave the same difference)"
    return RelativeResult(
        metric=rule["metric"],
        status=status,
        explanation=sentence,
        value=value,
        baseline_value=baseline_value,
        difference=value - baseline_value,
        low=low,
        high=high,
        p_value=p_value,
        method=metric.method,
        margin=allowed,
        n_shared=len(shared),
    )


def _mean(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return values[idx].mean(axis=-1)


def _auroc_with(labels: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def statistic(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return np.asarray(auroc(values[idx], labels[idx]))

    return statistic


def _difference_interval(interval: PairedInterval, better_high: bool) -> tuple[float, float]:
    """The interval of candidate - baseline, from the interval of the worsening."""
    if better_high:
        return -interval.high, -interval.low
    return interval.low, interval.high


def verdict_of(
    session: Session, audit: Audit, policy: AuditPolicy, summary: Mapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    """(verdict, pending) of a finished policy audit whose policy compares with a baseline:
    pending while the baseline's audit has not ended."""
    found = dict(audit.baseline or {"ref": policy.baseline, "error": "no baseline resolved"})
    relative = [rule for rule in policy.thresholds if is_relative(rule)]
    name = baseline_name(found)
    if audit.baseline_audit_id == audit.id:  # compared with itself it could only pass
        comparisons = [not_compared(rule["metric"]) for rule in relative]
    elif "error" in found or audit.baseline_audit_id is None:
        reason = found.get("error") or "no baseline resolved"
        comparisons = [withheld(rule["metric"], name, reason) for rule in relative]
    else:
        base = session.get(Audit, audit.baseline_audit_id)
        if base is None:
            comparisons = [withheld(r["metric"], name, "its audit was deleted") for r in relative]
            return _evaluated(summary, policy, comparisons, found), False
        if base.status not in AuditStatus.FINAL:
            return pending_verdict(found), True
        base_summary, base_status = base.summary or {}, base.status
        comparisons = [
            compare(session, rule, (audit, summary), (base, base_summary, base_status), name)
            for rule in relative
        ]
    return _evaluated(summary, policy, comparisons, found), False


def _evaluated(
    summary: Mapping[str, Any],
    policy: AuditPolicy,
    comparisons: list[RelativeResult],
    found: dict[str, Any],
) -> dict[str, Any]:
    return evaluate(
        summary, policy.thresholds, policy.on_inconclusive, comparisons, found
    ).to_json()


def reach_pending(db: Database, audit_id: str) -> bool:
    """Reach the pending verdict of an ended audit whose baseline's audit has ended: True only
    for the call that recorded it (that caller announces it)."""
    with db.session() as session:
        audit = session.get(Audit, audit_id)
        if audit is None or not audit.verdict_pending:
            return False
        base = session.get(Audit, audit.baseline_audit_id) if audit.baseline_audit_id else None
        if base is not None and base.status not in AuditStatus.FINAL:
            return False
        policy = session.get(AuditPolicy, audit.policy_id) if audit.policy_id else None
        if policy is None:  # deleted meanwhile: nothing to judge by
            verdict = {
                "status": "unknown",
                "results": [],
                "promotion": "blocked",
                "reason": "unknown: the policy was deleted",
            }
        else:
            verdict = verdict_of(session, audit, policy, audit.summary or {})[0]
        reached = session.execute(
            update(Audit)
            .where(Audit.id == audit_id, Audit.verdict_pending.is_(True))
            .values(verdict=verdict, verdict_pending=False)
        ).rowcount
        return reached == 1


def reach_waiting(db: Database, baseline_audit_id: str) -> list[str]:
    """The audits that waited for this (ended) baseline audit and whose verdicts this call
    reached: the caller announces each."""
    with db.session() as session:
        waiting = session.scalars(
            select(Audit.id).where(
                Audit.baseline_audit_id == baseline_audit_id,
                Audit.verdict_pending.is_(True),
                Audit.id != baseline_audit_id,
            )
        ).all()
    return [audit_id for audit_id in waiting if reach_pending(db, audit_id)]


def reach_stale(db: Database) -> list[str]:
    """Every pending verdict whose baseline's audit has ended by now (cancelled through the
    API, say, where no worker announces the end): the reaper's safety net."""
    with db.session() as session:
        waiting = session.scalars(
            select(Audit.id).where(
                Audit.verdict_pending.is_(True), Audit.status.in_(AuditStatus.FINAL)
            )
        ).all()
    return [audit_id for audit_id in waiting if reach_pending(db, audit_id)]
