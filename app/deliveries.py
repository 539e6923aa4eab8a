"""Webhook health: every delivery received, refused at the door, or caught by reconciliation,
newest first, with what it started. Admin only: deliveries name registry models and policies."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, func, literal, select, union_all
from sqlalchemy.orm import Session

from app.hooks import KEPT_REFUSALS
from core.config import Settings
from core.models import Audit, EventCount, WebhookDelivery, WebhookRefusal
from core.schemas import DeliveriesPublic, DeliveryAudit, DeliveryPublic

REFUSED_PREFIX = "refused:"
COUNTED_PREFIX = "webhook."


def _reason(status: str, detail: dict[str, Any]) -> str | None:
    """One sentence on what became of an accepted delivery."""
    if status == "received" and detail.get("retries"):
        earlier = (detail.get("retried") or {}).get("status")
        return f"queued again for a worker (retry {detail['retries']}; the earlier was {earlier})"
    if status == "received":
        return "queued for a worker"
    if detail.get("reason"):
        return str(detail["reason"])
    refused = detail.get("refused") or []
    if refused:
        return "; ".join(f"policy {r.get('policy')}: {r.get('error')}" for r in refused)
    if status == "processed" and not detail.get("audits"):
        return "no audit started: no enabled policy matches, or each audited this version before"
    return None


def _page_keys(
    session: Session, source: str | None, outcome: str | None, limit: int, offset: int
) -> tuple[list[tuple[str, str]], int]:
    """(kind, key) of one page over both tables, newest first, and the total."""
    parts = []
    if outcome != "refused":
        accepted = select(
            WebhookDelivery.id.label("key"),
            cast(literal("delivery"), String(16)).label("kind"),
            WebhookDelivery.received_at.label("at"),
        )
        if source:
            accepted = accepted.where(WebhookDelivery.source == source)
        if outcome:
            accepted = accepted.where(WebhookDelivery.status == outcome)
        parts.append(accepted)
    if outcome in (None, "refused"):
        refused = select(
            cast(WebhookRefusal.id, String(200)).label("key"),
            cast(literal("refusal"), String(16)).label("kind"),
            WebhookRefusal.received_at.label("at"),
        )
        if source:
            refused = refused.where(WebhookRefusal.source == source)
        parts.append(refused)
    both = union_all(*parts).subquery()
    count = session.scalar(select(func.count()).select_from(both))
    rows = session.execute(
        select(both.c.kind, both.c.key)
        .order_by(both.c.at.desc(), both.c.key.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [(kind, key) for kind, key in rows], int(count or 0)


def _audits(session: Session, settings: Settings, ids: list[str]) -> dict[str, DeliveryAudit]:
    base = settings.public_url.rstrip("/")
    rows = session.scalars(select(Audit).where(Audit.id.in_(ids))) if ids else []
    return {
        a.id: DeliveryAudit(
            id=a.id,
            status=a.status,
            verdict=(a.verdict or {}).get("status"),
            report_url=f"{base}/audits/{a.id}",
        )
        for a in rows
    }


def refusal_counts(session: Session) -> dict[str, dict[str, int]]:
    """Refusals per source and reason, from the counters the metrics also read."""
    counts: dict[str, dict[str, int]] = {}
    rows = session.execute(
        select(EventCount.name, EventCount.count).where(
            EventCount.name.startswith(COUNTED_PREFIX, autoescape=True)
        )
    )
    for name, count in rows:
        source, _, reason = name.removeprefix(COUNTED_PREFIX).partition(".")
        counts.setdefault(source, {})[reason] = int(count)
    return counts


def list_deliveries(
    session: Session,
    settings: Settings,
    *,
    source: str | None,
    outcome: str | None,
    limit: int,
    offset: int,
) -> DeliveriesPublic:
    keys, count = _page_keys(session, source, outcome, limit, offset)
    accepted = {
        d.id: d
        for d in session.scalars(
            select(WebhookDelivery).where(
                WebhookDelivery.id.in_([k for kind, k in keys if kind == "delivery"])
            )
        )
    }
    refused = {
        str(r.id): r
        for r in session.scalars(
            select(WebhookRefusal).where(
                WebhookRefusal.id.in_([int(k) for kind, k in keys if kind == "refusal"])
            )
        )
    }
    audit_ids = [a for d in accepted.values() for a in (d.detail or {}).get("audits", [])]
    audits = _audits(session, settings, audit_ids)
    data = []
    for kind, key in keys:
        if kind == "refusal":
            r = refused.get(key)
            if r is None:  # pruned by a newer refusal since the page's keys were read
                continue
            data.append(
                DeliveryPublic(
                    id=f"{REFUSED_PREFIX}{r.id}",
                    received_at=r.received_at,
                    source=r.source,
                    event=r.event,
                    outcome="refused",
                    reason=f"{r.reason}: {r.message}",
                    delivery_id=r.delivery_id,
                )
            )
            continue
        d, detail = accepted[key], dict(accepted[key].detail or {})
        data.append(
            DeliveryPublic(
                id=d.id,
                received_at=d.received_at,
                source=d.source,
                event=d.event,
                outcome=d.status,
                reason=_reason(d.status, detail),
                model_uri=detail.get("model_uri"),
                audits=[audits[a] for a in detail.get("audits", []) if a in audits],
            )
        )
    return DeliveriesPublic(
        data=data, count=count, refused=refusal_counts(session), kept_refusals=KEPT_REFUSALS
    )
