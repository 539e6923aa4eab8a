"""Telling a team's channels of an audit's end: which channels, one attempt at a time, each
attempt logged, and each outcome sent to each channel once.

Plain Python over the database; a webhook goes through `worker/delivery.py` (the callback's
checked POST and retry rules), e-mail through `worker/mail.py`; `worker/tasks.py` schedules
the attempts. Nothing here logs or stores a webhook URL: logs name the channel by id.
"""

from __future__ import annotations

import json
import logging
import time

from sqlalchemy import select

from core.config import Settings
from core.db import Database
from core.models import Audit, AuditPolicy, NotificationChannel, NotificationDelivery
from core.notifications import Outcome, audit_outcome
from worker import mail
from worker.delivery import Attempt, Response, post
from worker.notification_messages import (
    Message,
    chat_payload,
    cleaned,
    compose,
    configured_secrets,
)

log = logging.getLogger(__name__)
MIN_PATH_CHARS = 8  # a shorter path ("/", "/hook") is no secret, and would mask too much


def channels_to_tell(db: Database, audit_id: str) -> list[str]:
    """The audit team's channels that take this outcome and have not been tried for it yet
    (an attempt, delivered or not, means its chain of retries is under way or over)."""
    with db.session() as session:
        audit = session.get(Audit, audit_id)
        outcome = audit_outcome(audit) if audit is not None else None
        if outcome is None:
            return []
        channels = session.scalars(
            select(NotificationChannel)
            .where(NotificationChannel.team_id == audit.team_id)
            .order_by(NotificationChannel.created_at)
        ).all()
        tried = set(
            session.scalars(
                select(NotificationDelivery.channel_id).where(
                    NotificationDelivery.audit_id == audit_id,
                    NotificationDelivery.outcome == outcome.outcome,
                )
            )
        )
        return [
            c.id for c in channels if outcome.events & set(c.events or ()) and c.id not in tried
        ]


def _send(channel: NotificationChannel, message: Message, settings: Settings) -> Response:
    if channel.kind == "email":
        envelope = mail.envelope(settings, channel.recipients, message.subject, message.text)
        response = mail.send(settings, envelope, channel.recipients)
    else:
        body = json.dumps(chat_payload(message, channel.slack_blocks)).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "memaudit-notification"}
        response = post(channel.webhook_url or "", body, headers, settings)
    if not response.error:
        return response
    # A refusal or an httpx error may quote the URL, path and all; a relay may echo a login.
    secrets = [*_url_secrets(channel.webhook_url), *configured_secrets(settings)]
    return Response(response.status_code, cleaned(response.error, secrets), response.retryable)


def _url_secrets(url: str | None) -> list[str]:
    """The webhook URL, and the part that makes it a secret (Slack's /services/T…/B…/token)."""
    if not url:
        return []
    rest = url.split("://", 1)[-1]
    path = rest[rest.find("/") :] if "/" in rest else ""
    return [url, path] if len(path) >= MIN_PATH_CHARS else [url]


def deliver(
    db: Database, settings: Settings, channel_id: str, audit_id: str, attempt: int
) -> Attempt:
    """One attempt to tell the channel of the audit's outcome; a delivered one ends them all."""
    with db.session() as session:
        channel = session.get(NotificationChannel, channel_id)
        audit = session.get(Audit, audit_id)
        outcome: Outcome | None = audit_outcome(audit) if audit is not None else None
        if channel is None or outcome is None or not outcome.events & set(channel.events or ()):
            return Attempt(False, False)  # the channel was deleted, or there is nothing to tell
        done = session.scalar(
            select(NotificationDelivery.id).where(
                NotificationDelivery.channel_id == channel_id,
                NotificationDelivery.audit_id == audit_id,
                NotificationDelivery.outcome == outcome.outcome,
                NotificationDelivery.delivered.is_(True),
            )
        )
        if done is not None:  # a repeated task, or a retry that raced a success
            return Attempt(True, False)
        policy = session.get(AuditPolicy, audit.policy_id) if audit.policy_id else None
        policy_name = policy.name if policy else (audit.labels or {}).get("policy")
        message = compose(audit, outcome, policy_name, settings, _url_secrets(channel.webhook_url))
        session.expunge(channel)
    started = time.perf_counter()
    response = _send(channel, message, settings)
    with db.session() as session:
        session.add(
            NotificationDelivery(
                channel_id=channel_id,
                audit_id=audit_id,
                event=outcome.event,
                outcome=outcome.outcome,
                attempt=attempt,
                status_code=response.status_code,
                error=response.error,
                duration_ms=int((time.perf_counter() - started) * 1000),
                delivered=response.delivered,
            )
        )
    log.info(
        "notification of audit %s to channel %s (attempt %d): %s",
        audit_id,
        channel_id,
        attempt,
        "delivered" if response.delivered else f"not delivered ({response.status_code})",
    )
    return response.attempt
