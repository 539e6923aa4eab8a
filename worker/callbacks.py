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

from core.config import Settings
from core.db import Database
from core.models import Audit, AuditStatus, CallbackDelivery
from core.outbound import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    UrlNotAllowed,
    checked_client,
    signature,
)

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


@dataclass(frozen=True)
class Response:
    status_code: int | None  # None: no HTTP answer
    error: str | None
    retryable: bool  # a network error, a 5xx or a 429 may pass; a refused URL or a 4xx not

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _post(url: str, body: bytes, headers: dict[str, str], settings: Settings) -> Response:
    """The POST itself, each hop (redirects included) checked and sent to the address that
    was checked; a refused URL or a network error is an answer too."""
    client = checked_client(
        settings.callback_hosts,
        settings.callback_allow_private,
        setting="MEMAUDIT_CALLBACK_ALLOWED_HOSTS",
        timeout=settings.callback_timeout_seconds,
        follow_redirects=True,
    )
    try:
        with client:
            answer = client.post(url, content=body, headers=headers)
    except UrlNotAllowed as exc:
        return Response(None, str(exc), retryable=False)
    except httpx.TooManyRedirects as exc:
        return Response(None, f"TooManyRedirects: {exc}", retryable=False)
    except httpx.HTTPError as exc:
        return Response(None, f"{type(exc).__name__}: {exc}", retryable=True)
    code = answer.status_code
    return Response(
        code, None if 200 <= code < 300 else answer.text[:500], code >= 500 or code == 429
    )


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
    response = _post(url, body, headers, settings)
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
    return Attempt(response.delivered, not response.delivered and response.retryable)


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: the base, doubled after every failure."""
    return settings.callback_backoff_seconds * 2 ** (attempt - 1)
