"""Delivering an audit's result to its callback URL: signed, logged per attempt, retried.

Plain Python over the database and HTTP; `worker/tasks.py` schedules the retries.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select

from app.config import Settings
from app.db import Database
from app.models import Audit, AuditStatus, CallbackDelivery
from app.outbound import SIGNATURE_HEADER, TIMESTAMP_HEADER, UrlNotAllowed, check_url, signature

DELIVERY_HEADER = "X-Memaudit-Delivery"


@dataclass(frozen=True)
class Attempt:
    delivered: bool
    retry: bool  # a later attempt may succeed (a 5xx, 429 or network error)


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


def _log(db: Database, audit_id: str, attempt: int, url: str, **outcome: Any) -> None:
    with db.session() as session:
        session.add(CallbackDelivery(audit_id=audit_id, attempt=attempt, url=url, **outcome))


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
    started = time.perf_counter()
    try:
        check_url(url, settings.callback_hosts, settings.callback_allow_private)
    except UrlNotAllowed as exc:
        _log(
            db,
            audit_id,
            attempt,
            url,
            status_code=None,
            error=str(exc),
            duration_ms=0,
            delivered=False,
        )
        return Attempt(False, False)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(settings.callback_signing_secret(), timestamp, body),
        TIMESTAMP_HEADER: str(timestamp),
        DELIVERY_HEADER: f"{audit_id}:{attempt}",
        "User-Agent": "memaudit-callback",
    }
    try:
        response = httpx.post(
            url,
            content=body,
            headers=headers,
            timeout=settings.callback_timeout_seconds,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        elapsed = int((time.perf_counter() - started) * 1000)
        _log(
            db,
            audit_id,
            attempt,
            url,
            status_code=None,
            error=f"{type(exc).__name__}: {exc}",
            duration_ms=elapsed,
            delivered=False,
        )
        return Attempt(False, True)
    elapsed = int((time.perf_counter() - started) * 1000)
    delivered = 200 <= response.status_code < 300
    _log(
        db,
        audit_id,
        attempt,
        url,
        status_code=response.status_code,
        error=None if delivered else response.text[:500],
        duration_ms=elapsed,
        delivered=delivered,
    )
    retry = not delivered and (response.status_code >= 500 or response.status_code == 429)
    return Attempt(delivered, retry)


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: the base, doubled after every failure."""
    return settings.callback_backoff_seconds * 2 ** (attempt - 1)
