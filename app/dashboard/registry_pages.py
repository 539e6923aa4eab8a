"""The data behind the admin pages on registry integration: deliveries and policies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.deliveries import list_deliveries
from core import policies
from core.config import Settings
from core.models import Audit
from core.schemas import DeliveryOutcome, DeliverySource

SOURCES: tuple[str, ...] = DeliverySource.__args__  # type: ignore[attr-defined]
OUTCOMES: tuple[str, ...] = DeliveryOutcome.__args__  # type: ignore[attr-defined]
POLICY_PAGE = 200
RECENT_AUDITS = 5


def deliveries(
    session: Session, settings: Settings, filters: Mapping[str, str | None], page: int, size: int
) -> dict[str, Any]:
    source = filters.get("source") if filters.get("source") in SOURCES else None
    outcome = filters.get("outcome") if filters.get("outcome") in OUTCOMES else None
    listed = list_deliveries(
        session, settings, source=source, outcome=outcome, limit=size, offset=(page - 1) * size
    )
    return {
        "rows": listed.data,
        "count": listed.count,
        "refused": listed.refused,
        "kept_refusals": listed.kept_refusals,
        "page": page,
        "pages": max(1, -(-listed.count // size)),
        "filters": {"source": source or "", "outcome": outcome or ""},
        "sources": SOURCES,
        "outcomes": OUTCOMES,
    }


def _recent_audits(session: Session, policy_id: str) -> list[Audit]:
    return list(
        session.scalars(
            select(Audit)
            .where(Audit.policy_id == policy_id)
            .order_by(Audit.created_at.desc(), Audit.id)
            .limit(RECENT_AUDITS)
        )
    )


def policy_overview(session: Session) -> dict[str, Any]:
    """Every policy as the API shows it (its warnings too), with its latest audits and their
    verdicts."""
    rows, count = policies.list_policies(session, POLICY_PAGE, 0)
    items = []
    for policy in rows:
        public = policies.to_public(policy)
        items.append(
            {
                "policy": public,
                "warnings": public.warnings,
                "audits": _recent_audits(session, policy.id),
            }
        )
    return {"items": items, "count": count, "shown": len(items)}
