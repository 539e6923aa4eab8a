"""The audit log's reading side: filtered, newest-first pages for the admin API and page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.errors import ApiError
from core.models import AuditLogEntry
from core.schemas import AuditLogActor, AuditLogEntryPublic, AuditLogPublic


@dataclass(frozen=True)
class LogFilters:
    actor: str | None = None  # an actor's id or name
    action: str | None = None  # e.g. policy.updated
    target: str | None = None  # a type (policy) or one object (policy:<id>)
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def _naive_utc(moment: datetime) -> datetime:
    """Entries are stored naive in UTC; a bound given with an offset is moved to UTC."""
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC time
        raise ApiError(422, "invalid_filter", f"{moment.isoformat()} is out of range") from None


def _conditions(filters: LogFilters) -> list:
    since = _naive_utc(filters.since) if filters.since is not None else None
    until = _naive_utc(filters.until) if filters.until is not None else None
    if since is not None and until is not None and since > until:
        raise ApiError(422, "invalid_filter", "since must not be after until")
    conditions = []
    if filters.actor:
        conditions.append(
            or_(AuditLogEntry.actor_id == filters.actor, AuditLogEntry.actor_name == filters.actor)
        )
    if filters.action:
        conditions.append(AuditLogEntry.action == filters.action)
    if filters.target:
        target_type, _, target_id = filters.target.partition(":")
        conditions.append(AuditLogEntry.target_type == target_type)
        if target_id:
            conditions.append(AuditLogEntry.target_id == target_id)
    if since is not None:
        conditions.append(AuditLogEntry.created_at >= since)
    if until is not None:
        conditions.append(AuditLogEntry.created_at < until)
    return conditions


def to_public(entry: AuditLogEntry) -> AuditLogEntryPublic:
    return AuditLogEntryPublic(
        id=entry.id,
        created_at=entry.created_at,
        actor=AuditLogActor(
            id=entry.actor_id,
            name=entry.actor_name,
            kind=entry.actor_kind,
            team_id=entry.actor_team_id,
        ),
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        detail=entry.detail or {},
        request_id=entry.request_id,
        client=entry.client,
    )


def list_entries(session: Session, filters: LogFilters, limit: int, offset: int) -> AuditLogPublic:
    """One page, newest first (by id: the order entries were written, whatever the clocks)."""
    conditions = _conditions(filters)
    count = session.scalar(select(func.count()).select_from(AuditLogEntry).where(*conditions))
    rows = session.scalars(
        select(AuditLogEntry)
        .where(*conditions)
        .order_by(AuditLogEntry.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return AuditLogPublic(data=[to_public(row) for row in rows], count=int(count or 0))
