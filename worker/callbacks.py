"""Delivering an audit's result to its callback URL: signed, logged per attempt, retried.

Plain Python over the database; the POST and its retry rules are `worker/delivery.py`'s, and
`worker/tasks.py` schedules the retries.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select

from core.config import Settings
from core.db import Database
from core.models import Audit, AuditStatus, CallbackDelivery
from core.outbound import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from worker.delivery import Attempt, post

DELIVERY_HEADER = "X-Memaudit-Delivery"


def payload(audit: Audit, settings: Settings) -> dict[str, Any]:
    return {
        "event": "audit.finished",
        "audit_id": audit.id,
        "status": audit.status,
        "model_uri": audit.model_uri,
        "dataset_uri": audit.dataset_uri,
        "labels": audit.labels or {},
        "error": audit.error,
        "summary": audit.summary or {},
        "verdict": audit.verdict,
        "report_url": f"{settings.public_url.rstrip('/')}/audits/{audit.id}",
        "finished_at": audit.finished_at.isoformat() + "Z" if audit.finished_at else None,
    }


def deliver(db: Database, settings: Settings, audit_id: str, attempt: int) -> Attempt:
    """One POST of the finished audit; every attempt is logged, a delivered one only once."""
    with db.session() as session:
        audit = session.get(Audit, audit_id)
        if audit is None or not audit.callback_url or audit.status not in AuditStatus.FINAL:
            return Attempt(False, False)
        done = session.scalar(
            select(CallbackDelivery.id).where(
                CallbackDelivery.audit_id == audit_id, CallbackDelivery.delivered.is_(True)
            )
        )
        if done is not None:  # finalize ran twice, or a retry raced a success
            return Attempt(True, False)
        url = audit.callback_url
        body = json.dumps(payload(audit, settings), separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(settings.callback_signing_secret(), timestamp, body),
        TIMESTAMP_HEADER: str(timestamp),
        DELIVERY_HEADER: f"{audit_id}:{attempt}",
        "User-Agent": "memaudit-callback",
    }
    started = time.perf_counter()
    response = post(url, body, headers, settings)
    with db.session() as session:
        session.add(
            CallbackDelivery(
                audit_id=audit_id,
                attempt=attempt,
                url=url,
                status_code=response.status_code,
                error=response.error,
                duration_ms=int((time.perf_counter() - started) * 1000),
                delivered=response.delivered,
            )
        )
    return response.attempt
