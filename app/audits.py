"""Audit queries and cancellation: the plain functions behind the audit routes (submission is
`core/submission.py`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from celery import Celery
from sqlalchemy import Row, and_, func, literal, or_, select, tuple_, update
from sqlalchemy.orm import InstrumentedAttribute, Session, defer

from app.findings import audit_findings
from core.audit_log import record
from core.config import Settings
from core.db import Database, utcnow
from core.errors import ApiError
from core.inspection import mlflow_models, wandb_models
from core.models import (
    ApiKey,
    Audit,
    AuditStatus,
    CallbackDelivery,
    SampleResult,
    Shard,
    ShardStatus,
)
from core.schemas import AuditPublic, FindingPublic, Progress
from core.task_names import DELIVER_CALLBACK, WRITE_BACK_TO_REGISTRY
from core.tenancy import can_see, visible
from worker.checks.registry import REGISTRY

log = logging.getLogger(__name__)


def get_audit(session: Session, audit_id: str, key: ApiKey) -> Audit:
    """An audit the key may see; another team's is as missing as one that never was."""
    audit = session.get(Audit, audit_id)
    if audit is None or not can_see(key, audit.team_id):
        raise ApiError(404, "not_found", f"no audit {audit_id!r}")
    return audit


def progress_of(session: Session, audit: Audit) -> Progress:
    if audit.status == AuditStatus.SUCCEEDED:
        return Progress(done=audit.n_samples, total=audit.n_samples)
    done = session.scalar(
        select(func.coalesce(func.sum(Shard.done), 0)).where(Shard.audit_id == audit.id)
    )
    return Progress(done=int(done), total=audit.n_samples)


def to_public(session: Session, settings: Settings, audit: Audit) -> AuditPublic:
    return AuditPublic(
        id=audit.id,
        status=audit.status,
        progress=progress_of(session, audit),
        error=audit.error,
        model_uri=audit.model_uri,
        model_family=audit.model_family,
        model_version=audit.model_version,
        reference_model_uri=audit.reference_model_uri,
        dataset_uri=audit.dataset_uri,
        checks=audit.checks,
        labels=audit.labels or {},
        summary=audit.summary or {},
        provenance=audit.provenance or {},
        policy_id=audit.policy_id,
        verdict=audit.verdict,
        baseline=audit.baseline,
        findings=[FindingPublic(**found.to_json()) for found in audit_findings(audit)],
        created_by=audit.created_by,
        cancel_requested=audit.cancel_requested,
        created_at=audit.created_at,
        started_at=audit.started_at,
        finished_at=audit.finished_at,
        report_url=f"{settings.public_url.rstrip('/')}/audits/{audit.id}",
    )


def list_audits(
    session: Session,
    key: ApiKey,
    *,
    status: str | None,
    model: str | None,
    label: str | None,
    limit: int,
    offset: int,
    family: str | None = None,
) -> tuple[list[Audit], int]:
    query = visible(select(Audit), Audit.team_id, key)
    if family:
        query = query.where(Audit.model_family == family)
    if status:
        query = query.where(Audit.status == status)
    if model:
        query = query.where(Audit.model_uri == model)
    if label:
        name, sep, value = label.partition(":")
        if not sep:
            raise ApiError(422, "invalid_filter", "label filter must be name:value")
        query = query.where(Audit.labels[name].as_string() == value)
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(
        query.order_by(Audit.created_at.desc(), Audit.id).limit(limit).offset(offset)
    ).all()
    return list(rows), int(count)


def list_callbacks(session: Session, audit: Audit) -> list[CallbackDelivery]:
    return list(
        session.scalars(
            select(CallbackDelivery)
            .where(CallbackDelivery.audit_id == audit.id)
            .order_by(CallbackDelivery.created_at, CallbackDelivery.attempt)
        )
    )


# Registries whose versions carry a verdict back: a cancelled policy audit's too.
REGISTRY_PREFIXES = (mlflow_models.PREFIX, wandb_models.PREFIX)


def announce_end(celery: Celery, settings: Settings, audit: Audit) -> None:
    """What the worker does when an audit ends, for one that ended in the API (a
    cancellation): its callback, and its registry tags."""
    tasks = [DELIVER_CALLBACK] if audit.callback_url else []
    if audit.model_uri and audit.model_uri.startswith(REGISTRY_PREFIXES):
        tasks.append(WRITE_BACK_TO_REGISTRY)
    for task in tasks:
        try:
            celery.send_task(task, args=[audit.id], queue=settings.queue)
        except Exception:  # broker down: the cancellation stands; the loss is logged
            log.exception("could not queue %s for audit %s", task, audit.id)


def cancel_audit(session: Session, audit: Audit) -> Audit:
    """Record the cancellation; running workers see it between batches and stop."""
    if audit.status not in AuditStatus.ACTIVE:
        raise ApiError(409, "not_cancellable", f"audit {audit.id} is already {audit.status}")
    was, now = audit.status, utcnow()  # the update below changes the loaded audit too
    cancelled = session.execute(
        update(Audit)
        .where(Audit.id == audit.id, Audit.status.in_(AuditStatus.ACTIVE))
        .values(cancel_requested=True, status=AuditStatus.CANCELLED, finished_at=now)
    )
    if cancelled.rowcount:  # not when it ended in the meantime: nothing was cancelled
        record(session, "audit.cancelled", "audit", audit.id, {"was": was})
    session.execute(
        update(Shard)
        .where(Shard.audit_id == audit.id, Shard.status == ShardStatus.QUEUED)
        .values(status=ShardStatus.CANCELLED)
    )
    session.commit()
    session.refresh(audit)
    return audit


def get_sample(session: Session, audit: Audit, sample_index: int) -> list[SampleResult]:
    """Every check's row for one record, with its token view."""
    rows = session.scalars(
        select(SampleResult)
        .where(
            SampleResult.audit_id == audit.id,
            # Naming the checks lets the (audit_id, check, sample_index) key find the rows.
            SampleResult.check.in_([entry["kind"] for entry in audit.checks]),
            SampleResult.sample_index == sample_index,
        )
        .order_by(SampleResult.check)
    ).all()
    if not rows:
        raise ApiError(404, "not_found", f"audit {audit.id} has no sample {sample_index}")
    return list(rows)


def require_check(audit: Audit, check: str | None) -> None:
    kinds = [entry["kind"] for entry in audit.checks]
    if check is not None and check not in kinds:
        raise ApiError(422, "unknown_check", f"audit has no check {check!r}; it has {kinds}")


def iter_sample_pages(
    db: Database, audit_id: str, check: str | None, page_size: int = 2000
) -> Iterator[list[Row]]:
    """Every row in (check, sample_index) order, a page per short session: an export of a
    million rows streams in bounded memory and holds no transaction open while it is sent."""
    after: tuple[str, int] | None = None
    while True:
        conditions = [SampleResult.audit_id == audit_id]
        if check is not None:
            conditions.append(SampleResult.check == check)
        if after is not None:
            conditions.append(tuple_(SampleResult.check, SampleResult.sample_index) > after)
        with db.session() as session:
            rows = session.execute(
                select(
                    SampleResult.check,
                    SampleResult.sample_index,
                    SampleResult.sample_id,
                    SampleResult.values,
                )
                .where(*conditions)
                .order_by(SampleResult.check, SampleResult.sample_index)
                .limit(page_size)
            ).all()
        if not rows:
            return
        yield list(rows)
        after = (rows[-1].check, rows[-1].sample_index)


def _sort_column(audit: Audit, check: str | None, order_by: str) -> Any:
    """The column or expression to order by: an indexed one wherever the table can sort."""
    if order_by == "sample_index":
        return SampleResult.sample_index
    if order_by == "score":
        return SampleResult.score
    if check is not None:
        kind = REGISTRY.get_check(check)
        entry = next(e for e in audit.checks if e["kind"] == check)
        params = kind.parse_params(entry.get("params", {}))
        slot = kind.sort_slot(params, order_by)
        if slot is not None:
            return getattr(SampleResult, f"sort_{slot}")
        if kind.sortable_metric(order_by):  # any other numeric field: correct, not indexed
            path = tuple(order_by.split("."))
            return SampleResult.values[path if len(path) > 1 else path[0]].as_float()
    raise ApiError(
        422,
        "invalid_order",
        "order_by must be sample_index, score or, with check=, one of its numeric per-sample "
        "fields; a dotted path such as log10_pz.greedy reaches into nested values",
    )


def _cached_count(audit: Audit, check: str | None, member: bool | None) -> int | None:
    """The count finalize stored for a finished audit; None when it must be counted."""
    counts = audit.row_counts or {}
    label = "all" if member is None else str(member).lower()
    if audit.status != AuditStatus.SUCCEEDED or not counts:
        return None
    checks = [check] if check is not None else [entry["kind"] for entry in audit.checks]
    if any(name not in counts for name in checks):
        return None
    return sum(counts[name][label] for name in checks)


def _page_keys(
    conditions: list[Any], column: Any, desc: bool, searching: bool, limit: int, offset: int
) -> Any:
    """The query for one page's (check, sample_index), ordered with ties broken by index."""
    keyed = select(SampleResult.check, SampleResult.sample_index, column.label("sort_key"))
    source: Any = keyed.where(*conditions)
    if searching:
        # Matches are gathered first, from the narrow (audit, check, sample_id, score) index,
        # and only they are sorted; otherwise the planner walks the sort index over every row.
        source = source.cte("matches").prefix_with("MATERIALIZED")
    else:
        source = source.subquery("rows")
    direction = (lambda c: c.desc()) if desc else (lambda c: c.asc())
    first = direction(source.c.sort_key)
    if not isinstance(column, InstrumentedAttribute):  # a JSON field may be missing: last
        first = first.nulls_last()
    # Ties go the same way as the sort, so one index scan (forward or backward) serves it.
    # A search scans its matches anyway, so it counts them in passing; a window count on the
    # plain path would read every row the LIMIT lets the index skip.
    total = func.count().over() if searching else literal(None)
    return (
        select(source.c.check, source.c.sample_index, total.label("total"))
        .order_by(first, direction(source.c.sample_index), source.c.check)
        .limit(limit)
        .offset(offset)
    )


def list_samples(
    session: Session,
    audit: Audit,
    *,
    check: str | None,
    order_by: str,
    desc: bool,
    limit: int,
    offset: int,
    member: bool | None = None,
    search: str | None = None,
) -> tuple[list[SampleResult], int]:
    """One page of per-sample rows, sorted, filtered and paged in the database.

    The page's keys are found first from an index alone (even deep offsets skip index entries,
    not rows), then only those rows are read.
    """
    require_check(audit, check)
    conditions = [SampleResult.audit_id == audit.id]
    if check is not None:
        conditions.append(SampleResult.check == check)
    if member is not None:
        conditions.append(SampleResult.member.is_(member))
    if search:
        # A substring, literally: % and _ in the term match themselves, not any characters.
        conditions.append(SampleResult.sample_id.contains(search, autoescape=True))
    column = _sort_column(audit, check, order_by)
    keys = session.execute(_page_keys(conditions, column, desc, bool(search), limit, offset)).all()
    count = _cached_count(audit, check, member) if not search else None
    if count is None:
        # The page query counted its matches too (a window count); past the last page it
        # returned no row to carry that count, so count apart.
        count = keys[0].total if keys else None
    if count is None:
        count = session.scalar(select(func.count()).select_from(SampleResult).where(*conditions))
    if not keys:
        return [], int(count or 0)
    by_check: dict[str, list[int]] = {}
    for key in keys:
        by_check.setdefault(key.check, []).append(key.sample_index)
    # Per check an IN over sample indexes: point lookups in the primary key.
    found = session.scalars(
        select(SampleResult)
        .where(
            SampleResult.audit_id == audit.id,
            or_(
                *[
                    and_(SampleResult.check == name, SampleResult.sample_index.in_(indexes))
                    for name, indexes in by_check.items()
                ]
            ),
        )
        .options(defer(SampleResult.detail))
    ).all()
    by_key = {(row.check, row.sample_index): row for row in found}
    return [by_key[(key.check, key.sample_index)] for key in keys], int(count or 0)
