"""Per-record changes between two audits of one dataset: which records became (or stopped
being) greedily extractable, and which rose above (or fell to) each audit's own membership
threshold at 1% FPR.

Direction: the first audit is the *candidate* (`GET /v1/audits/{candidate}/compare/{baseline}`),
the second the *baseline*; "newly" means true in the candidate and not in the baseline.

Everything is counted and paged in the database: the two audits' rows are joined on their
primary key (audit_id, check, sample_index), so a million-record audit is never read into
Python, and a page reads only its own rows. A record counts only where both audits hold a
value for it (a record one audit skipped or held out changes nothing).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session, aliased

from app.audits import get_audit
from core.db import Database
from core.errors import ApiError
from core.models import NO_VALUE, ApiKey, Audit, AuditStatus, SampleResult
from worker.checks.registry import REGISTRY

EXTRACTION = "extraction"
EXTRACTED = "greedy_extracted"  # 1 where greedy decoding reproduced the suffix exactly
MEMBERSHIP = "membership"

NEWLY_EXTRACTABLE = "newly_extractable"
NO_LONGER_EXTRACTABLE = "no_longer_extractable"
NEWLY_ABOVE = "newly_above_threshold"
NO_LONGER_ABOVE = "no_longer_above_threshold"
CHANGE_KINDS = (NEWLY_EXTRACTABLE, NO_LONGER_EXTRACTABLE, NEWLY_ABOVE, NO_LONGER_ABOVE)
CHECK_OF = {
    NEWLY_EXTRACTABLE: EXTRACTION,
    NO_LONGER_EXTRACTABLE: EXTRACTION,
    NEWLY_ABOVE: MEMBERSHIP,
    NO_LONGER_ABOVE: MEMBERSHIP,
}

# The threshold's false-positive rate, as a fraction 1/FPR_DENOMINATOR (1%): integer arithmetic,
# so n // 100 is exact where 0.01 * n is not. METRICS.md: an FPR of α needs >= 1/α non-members.
FPR_DENOMINATOR = 100
MIN_NONMEMBERS = FPR_DENOMINATOR


@dataclass(frozen=True)
class Threshold:
    """One audit's membership threshold for one score at 1% FPR.

    `value` is the smallest t with #{non-members scoring > t} <= ⌊n/100⌋, i.e. the
    (⌊n/100⌋ + 1)-th largest non-member score; a record is *above* when its score > t strictly.
    At most 1% of the audit's own non-members are then above it (fewer where scores tie at t).
    """

    value: float | None
    n_nonmembers: int
    reason: str | None = None  # why there is no value


@dataclass(frozen=True)
class Group:
    """One change kind for one metric: what is counted and listed, or why it is not."""

    kind: str
    check: str
    metric: str | None  # EXTRACTED, or a membership score such as `loss`, `mink_0.2`
    reason: str | None = None  # not computed: why
    candidate_threshold: Threshold | None = None
    baseline_threshold: Threshold | None = None
    count: int | None = None

    @property
    def computed(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class Comparison:
    candidate: Audit
    baseline: Audit
    groups: list[Group]


@dataclass(frozen=True)
class Change:
    kind: str
    check: str
    metric: str
    sample_index: int
    sample_id: str
    member: bool | None
    candidate_value: float
    baseline_value: float
    candidate_threshold: float | None
    baseline_threshold: float | None


def require_comparable(candidate: Audit, baseline: Audit) -> None:
    """Both finished with every row, and of the same records: else one clear refusal."""
    for role, audit in (("candidate", candidate), ("baseline", baseline)):
        if audit.status in AuditStatus.ACTIVE:
            raise ApiError(
                409,
                "audit_not_finished",
                f"the {role} audit {audit.id} is {audit.status}: compare it once it has succeeded",
            )
        if audit.status != AuditStatus.SUCCEEDED:
            raise ApiError(
                409,
                "audit_not_succeeded",
                f"the {role} audit {audit.id} {audit.status}: its records are incomplete, "
                "so changes against it would be partly missing rows",
            )
    if candidate.dataset_sha256 != baseline.dataset_sha256:
        raise ApiError(
            422,
            "different_datasets",
            f"audits {candidate.id} and {baseline.id} ran on different datasets "
            f"(sha256 {candidate.dataset_sha256[:12]}… and {baseline.dataset_sha256[:12]}…): "
            "per-record changes need the same records",
        )


def _params(audit: Audit, check: str) -> Any | None:
    entry = next((e for e in audit.checks if e["kind"] == check), None)
    if entry is None:
        return None
    return REGISTRY.get_check(check).parse_params(entry.get("params", {}))


def value_of(row: Any, audit: Audit, check: str, metric: str) -> Any:
    """A per-record value as SQL: the indexed sort column that holds it (booleans as 0 and 1,
    NO_VALUE where missing), else the JSON field. `row` is SampleResult or an alias of it."""
    slot = REGISTRY.get_check(check).sort_slot(_params(audit, check), metric)
    # The sort columns are filled by dotted path, so a key with a dot (`mink_0.2`) never
    # reached its column (it holds NO_VALUE): such keys are read from the JSON.
    if slot is not None and "." not in metric:
        return getattr(row, f"sort_{slot}")
    return row.values[metric].as_float()


def _finite(value: Any) -> ColumnElement[bool]:
    """A present, finite value: not NULL (missing), not NO_VALUE, not ±inf."""
    return and_(value > NO_VALUE, value < -NO_VALUE)


# A succeeded audit's rows never change, so neither do its thresholds nor a pair's counts:
# each process keeps the latest ones, and paging through a comparison scans the rows once.
_REMEMBERED: OrderedDict[tuple[str, ...], Any] = OrderedDict()
REMEMBERED_MAX = 4096


def _remembered(key: tuple[str, ...], compute: Callable[[], Any]) -> Any:
    if key in _REMEMBERED:
        _REMEMBERED.move_to_end(key)
        return _REMEMBERED[key]
    value = _REMEMBERED[key] = compute()
    while len(_REMEMBERED) > REMEMBERED_MAX:
        _REMEMBERED.popitem(last=False)
    return value


def membership_threshold(session: Session, audit: Audit, metric: str) -> Threshold:
    """The audit's threshold for `metric` at 1% FPR, from its own labelled non-members."""
    if audit.status != AuditStatus.SUCCEEDED:  # rows may still come
        return _threshold(session, audit, metric)
    return _remembered(("threshold", audit.id, metric), lambda: _threshold(session, audit, metric))


def _threshold(session: Session, audit: Audit, metric: str) -> Threshold:
    value = value_of(SampleResult, audit, MEMBERSHIP, metric)
    nonmembers = (
        SampleResult.audit_id == audit.id,
        SampleResult.check == MEMBERSHIP,
        SampleResult.member.is_(False),
        _finite(value),
    )
    n = int(session.scalar(select(func.count()).select_from(SampleResult).where(*nonmembers)))
    if n < MIN_NONMEMBERS:
        held = "no records labelled `member: false`" if n == 0 else f"{n} scored non-members"
        return Threshold(
            None,
            n,
            f"audit {audit.id} has {held} for {metric}: a threshold at 1% FPR needs at least "
            f"{MIN_NONMEMBERS}",
        )
    allowed = n // FPR_DENOMINATOR  # non-members that may lie strictly above the threshold
    found = session.scalar(
        select(value).where(*nonmembers).order_by(value.desc()).limit(1).offset(allowed)
    )
    return Threshold(float(found), n)


def _shared_scores(candidate: Audit, baseline: Audit) -> list[str]:
    """Membership scores both audits computed, in the candidate's order."""

    def scores(audit: Audit) -> list[str]:
        return list(((audit.summary or {}).get(MEMBERSHIP) or {}).get("scores") or {})

    theirs = set(scores(baseline))
    return [score for score in scores(candidate) if score in theirs]


def _missing_check(candidate: Audit, baseline: Audit, check: str) -> str | None:
    lacking = [
        f"{role} {audit.id}"
        for role, audit in (("candidate", candidate), ("baseline", baseline))
        if _params(audit, check) is None
    ]
    if not lacking:
        return None
    return f"no {check} check in the {' and '.join(lacking)} audit{'s' if len(lacking) > 1 else ''}"


def plan(session: Session, candidate: Audit, baseline: Audit) -> Comparison:
    """Every change kind with what it compares (and each audit's thresholds), or why not."""
    groups: list[Group] = []
    missing = _missing_check(candidate, baseline, EXTRACTION)
    for kind in (NEWLY_EXTRACTABLE, NO_LONGER_EXTRACTABLE):
        groups.append(Group(kind, EXTRACTION, None if missing else EXTRACTED, missing))
    missing = _missing_check(candidate, baseline, MEMBERSHIP)
    scores = [] if missing else _shared_scores(candidate, baseline)
    if not missing and not scores:
        missing = "the two membership checks share no computed score"
    if missing:
        groups += [
            Group(kind, MEMBERSHIP, None, missing) for kind in (NEWLY_ABOVE, NO_LONGER_ABOVE)
        ]
    thresholds = {
        metric: (
            membership_threshold(session, candidate, metric),
            membership_threshold(session, baseline, metric),
        )
        for metric in scores
    }
    for kind in (NEWLY_ABOVE, NO_LONGER_ABOVE):  # ordered by kind, then metric
        for metric, (ours, theirs) in thresholds.items():
            reason = "; ".join(t.reason for t in (ours, theirs) if t.reason) or None
            groups.append(Group(kind, MEMBERSHIP, metric, reason, ours, theirs))
    return Comparison(candidate, baseline, groups)


# ---- the joined rows -----------------------------------------------------------------------


def _aliases() -> tuple[Any, Any]:
    return aliased(SampleResult, name="ours"), aliased(SampleResult, name="theirs")


def _join(comparison: Comparison, check: str, query: Any, ours: Any, theirs: Any) -> Any:
    """`query` over the candidate's rows of one check joined to the baseline's by primary key."""
    return (
        query.select_from(ours)
        .join(
            theirs,
            and_(
                theirs.audit_id == comparison.baseline.id,
                theirs.check == ours.check,
                theirs.sample_index == ours.sample_index,
            ),
        )
        .where(ours.audit_id == comparison.candidate.id, ours.check == check)
    )


def _values(comparison: Comparison, group: Group, ours: Any, theirs: Any) -> tuple[Any, Any]:
    """The group's metric on each side: the candidate's cv and the baseline's bv."""
    assert group.metric is not None
    # `+ 0.0` keeps the planner off the sort indexes here: a range on both sides' sort column
    # made SQLite walk one index inside the other (quadratic); the join goes by primary key.
    cv = value_of(ours, comparison.candidate, group.check, group.metric) + 0.0
    bv = value_of(theirs, comparison.baseline, group.check, group.metric) + 0.0
    return cv, bv


def _change(group: Group, cv: Any, bv: Any) -> ColumnElement[bool]:
    """The group's change as a condition on the candidate's value cv and the baseline's bv."""
    if group.check == EXTRACTION:
        extracted_now, extracted_then = cv >= 0.5, bv >= 0.5
        if group.kind == NEWLY_EXTRACTABLE:
            return and_(extracted_now, _finite(bv), ~extracted_then)
        return and_(_finite(cv), ~extracted_now, extracted_then)
    assert group.candidate_threshold and group.baseline_threshold
    above_now = cv > group.candidate_threshold.value
    above_then = bv > group.baseline_threshold.value
    if group.kind == NEWLY_ABOVE:
        return and_(_finite(cv), above_now, _finite(bv), ~above_then)
    return and_(_finite(cv), ~above_now, _finite(bv), above_then)


def count(session: Session, comparison: Comparison) -> Comparison:
    """Each computed group's number of changed records: one join scan per check, every
    group of that check summed in the same pass."""
    key = ("counts", comparison.candidate.id, comparison.baseline.id)
    final = {comparison.candidate.status, comparison.baseline.status} == {AuditStatus.SUCCEEDED}
    counts = (
        _remembered(key, lambda: _counts(session, comparison))
        if final
        else _counts(session, comparison)
    )
    return replace(
        comparison,
        groups=[replace(g, count=counts.get((g.kind, g.metric))) for g in comparison.groups],
    )


def _counts(session: Session, comparison: Comparison) -> dict[tuple[str, str | None], int]:
    counts: dict[tuple[str, str | None], int] = {}
    for check in (EXTRACTION, MEMBERSHIP):
        groups = [g for g in comparison.groups if g.computed and g.check == check]
        if not groups:
            continue
        ours, theirs = _aliases()
        sums = [
            func.coalesce(func.sum(case((_change(g, *_values(comparison, g, ours, theirs)), 1))), 0)
            for g in groups
        ]
        found = session.execute(_join(comparison, check, select(*sums), ours, theirs)).one()
        counts |= {(g.kind, g.metric): int(n) for g, n in zip(groups, found, strict=True)}
    return counts


def _changes(group: Group, rows: list[Any]) -> list[Change]:
    ct = group.candidate_threshold.value if group.candidate_threshold else None
    bt = group.baseline_threshold.value if group.baseline_threshold else None
    assert group.metric is not None
    return [
        Change(
            group.kind,
            group.check,
            group.metric,
            row.sample_index,
            row.sample_id,
            row.member,
            float(row.cv),
            float(row.bv),
            ct,
            bt,
        )
        for row in rows
    ]


def _rows(
    session: Session,
    comparison: Comparison,
    group: Group,
    limit: int,
    offset: int = 0,
    after: int | None = None,
) -> list[Change]:
    ours, theirs = _aliases()
    cv, bv = _values(comparison, group, ours, theirs)
    query = select(ours.sample_index, ours.sample_id, ours.member, cv.label("cv"), bv.label("bv"))
    query = _join(comparison, group.check, query, ours, theirs).where(_change(group, cv, bv))
    if after is not None:
        query = query.where(ours.sample_index > after)
    query = query.order_by(ours.sample_index).limit(limit).offset(offset)
    return _changes(group, list(session.execute(query).all()))


def select_groups(
    comparison: Comparison,
    *,
    kind: str | None = None,
    check: str | None = None,
    metric: str | None = None,
) -> list[Group]:
    """The computed groups a filter keeps; an unknown filter value is a 422 that lists choices."""
    choices = {
        "kind": (kind, CHANGE_KINDS),
        "check": (check, (EXTRACTION, MEMBERSHIP)),
        "metric": (metric, sorted({g.metric for g in comparison.groups if g.metric})),
    }
    for name, (value, allowed) in choices.items():
        if value is not None and value not in allowed:
            raise ApiError(422, "invalid_filter", f"{name} {value!r} is not one of {list(allowed)}")
    return [
        g
        for g in comparison.groups
        if g.computed
        and (kind is None or g.kind == kind)
        and (check is None or g.check == check)
        and (metric is None or g.metric == metric)
    ]


def page(
    session: Session, comparison: Comparison, groups: list[Group], limit: int, offset: int
) -> list[Change]:
    """One page across the groups in order (kind, then metric, then sample_index): groups the
    offset passes whole are skipped by their counts, never read."""
    found: list[Change] = []
    for group in groups:
        assert group.count is not None, "count() the comparison first"
        if offset >= group.count:
            offset -= group.count
            continue
        found += _rows(session, comparison, group, limit - len(found), offset)
        offset = 0
        if len(found) >= limit:
            break
    return found


def iter_pages(
    db: Database, comparison: Comparison, groups: list[Group], page_size: int = 2000
) -> Iterator[list[Change]]:
    """Every change of the groups, a page per short session keyed on sample_index: an export
    streams in bounded memory and holds no transaction open while it is sent."""
    for group in groups:
        after: int | None = None
        while True:
            with db.session() as session:
                rows = _rows(session, comparison, group, page_size, after=after)
            if not rows:
                break
            yield rows
            after = rows[-1].sample_index


def open_comparison(
    session: Session, key: ApiKey, candidate_id: str, baseline_id: str
) -> Comparison:
    """Both audits as the key may see them (another team's is a plain 404), comparable, with
    every change kind planned and counted."""
    candidate = get_audit(session, candidate_id, key)
    baseline = get_audit(session, baseline_id, key)
    require_comparable(candidate, baseline)
    return count(session, plan(session, candidate, baseline))


def totals(comparison: Comparison) -> dict[str, int]:
    """Changed records per kind, over every computed metric (0 where none is computed)."""
    found = dict.fromkeys(CHANGE_KINDS, 0)
    for group in comparison.groups:
        found[group.kind] += group.count or 0
    return found
