"""The audit log (admin scope): who created or cancelled audits, and changed policies, keys
and teams. Read-only here; the database refuses to change an entry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.audit_log import LogFilters, list_entries
from app.deps import AdminKey, SessionDep
from core.schemas import MAX_DB_INT, AuditLogPublic

router = APIRouter(tags=["audit log"])


@router.get("/v1/audit-log", response_model=AuditLogPublic)
def audit_log(
    session: SessionDep,
    _key: AdminKey,
    actor: Annotated[str | None, Query(max_length=200, description="actor id or name")] = None,
    action: Annotated[str | None, Query(max_length=64, examples=["policy.updated"])] = None,
    target: Annotated[
        str | None, Query(max_length=240, description="a type (policy) or one: policy:<id>")
    ] = None,
    since: Annotated[datetime | None, Query(description="from this time (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="before this time")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
) -> AuditLogPublic:
    """Entries newest first, paged; every filter narrows."""
    filters = LogFilters(actor=actor, action=action, target=target, since=since, until=until)
    return list_entries(session, filters, limit, offset)
