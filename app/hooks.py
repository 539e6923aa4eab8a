"""Registry webhooks received: verified, recorded once, and handed to a worker in milliseconds.

MLflow (>= 3.3) signs `"{delivery_id}.{timestamp}.{raw body}"` with HMAC-SHA256 and sends
`v1,<base64>` in X-MLflow-Signature. A delivery is accepted only with a valid signature, a
timestamp within the tolerance, and a delivery id never seen before (the row is the replay
guard). The Hugging Face Hub sends its shared secret in X-Webhook-Secret. A Weights & Biases
automation sends its webhook's access token as `Authorization: Bearer` and, when the webhook
has a secret, `X-Wandb-Signature` (`wandb_hooks.py`).

A refused delivery is kept as a `WebhookRefusal` (the latest few per source, never its body),
so a webhook set up with the wrong secret shows on the deliveries page with its reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from typing import Any

from celery import Celery
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import Database
from core.errors import ApiError
from core.json_input import JsonRefused, loads
from core.models import WebhookDelivery, WebhookRefusal
from core.task_names import HANDLE_REGISTRY_EVENT

MLFLOW_SIGNATURE = "x-mlflow-signature"
MLFLOW_TIMESTAMP = "x-mlflow-timestamp"
MLFLOW_DELIVERY = "x-mlflow-delivery-id"
HF_SECRET = "x-webhook-secret"
KEPT_REFUSALS = 50  # per source: enough to see a pattern, never an unbounded table


def mlflow_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    message = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_mlflow(
    headers: Mapping[str, str], body: bytes, secret: str, tolerance: int, now: float | None = None
) -> str:
    """The delivery id of a correctly signed, fresh MLflow delivery; ApiError otherwise."""
    if not secret:
        raise ApiError(
            404,
            "hook_not_configured",
            "this service has no MLflow webhook; set MEMAUDIT_MLFLOW_WEBHOOK_SECRET to enable it",
        )
    delivery_id = headers.get(MLFLOW_DELIVERY, "")
    timestamp = headers.get(MLFLOW_TIMESTAMP, "")
    presented = headers.get(MLFLOW_SIGNATURE, "")
    if not (delivery_id and timestamp and presented):
        raise ApiError(401, "unsigned", "X-MLflow-Signature, -Timestamp and -Delivery-Id needed")
    expected = mlflow_signature(secret, delivery_id, timestamp, body)
    if not hmac.compare_digest(expected, presented):
        raise ApiError(
            401,
            "bad_signature",
            "the signature does not match: compare the webhook's secret in MLflow with "
            "MEMAUDIT_MLFLOW_WEBHOOK_SECRET on this service",
        )
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        raise ApiError(401, "bad_timestamp", "X-MLflow-Timestamp is not a Unix time") from None
    if age > tolerance:
        raise ApiError(401, "stale_timestamp", f"the delivery is {age:.0f} s old (> {tolerance})")
    return delivery_id


def verify_huggingface(headers: Mapping[str, str], secret: str) -> None:
    if not secret:
        raise ApiError(
            404,
            "hook_not_configured",
            "this service has no Hub webhook; set MEMAUDIT_HF_WEBHOOK_SECRET to enable it",
        )
    presented = headers.get(HF_SECRET, "")
    if not hmac.compare_digest(presented.encode(), secret.encode()):
        raise ApiError(
            401,
            "bad_secret",
            "X-Webhook-Secret does not match: compare the webhook's secret on the Hub with "
            "MEMAUDIT_HF_WEBHOOK_SECRET on this service",
        )


def json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = loads(body)
    except JsonRefused as exc:
        raise ApiError(
            400, "invalid_json", f"the webhook body: {exc}", {"line": exc.line}
        ) from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_payload", "the webhook body must be a JSON object")
    return payload


def mlflow_event(payload: Mapping[str, Any]) -> str:
    return f"{payload.get('entity', '?')}.{payload.get('action', '?')}"


def huggingface_event(payload: Mapping[str, Any]) -> str:
    event = payload.get("event") if isinstance(payload.get("event"), dict) else {}
    return f"{event.get('scope', '?')}.{event.get('action', '?')}"


def wandb_event(payload: Mapping[str, Any]) -> str:
    """`LINK_ARTIFACT`, or `ADD_ARTIFACT_ALIAS(<alias>)`: the alias tells deliveries apart."""
    event, alias = str(payload.get("event_type", "?")), payload.get("alias")
    return (f"{event}({alias})" if alias and isinstance(alias, str) else event)[:100]


EVENT_NAMES = {"mlflow": mlflow_event, "huggingface": huggingface_event, "wandb": wandb_event}


def record(db: Database, source: str, delivery_id: str, payload: dict[str, Any], event: str) -> str:
    """Store the delivery; a delivery id seen before is a replay and is refused."""
    key = f"{source}:{delivery_id}"
    try:
        with db.session() as session:
            session.add(WebhookDelivery(id=key, source=source, event=event, payload=payload))
    except IntegrityError:
        raise ApiError(
            409, "replayed_delivery", f"delivery {delivery_id} was received before"
        ) from None
    return key


def accept_mlflow(db: Database, settings: Settings, headers: Mapping[str, str], body: bytes) -> str:
    delivery_id = verify_mlflow(
        headers, body, settings.mlflow_webhook_secret, settings.webhook_tolerance_seconds
    )
    payload = json_object(body)
    return record(db, "mlflow", delivery_id, payload, mlflow_event(payload))


def accept_huggingface(
    db: Database, settings: Settings, headers: Mapping[str, str], body: bytes
) -> str:
    verify_huggingface(headers, settings.hf_webhook_secret)
    payload = json_object(body)
    # The Hub sends no delivery id; each accepted delivery gets one, and audits stay
    # idempotent per (policy, repo revision).
    return record(db, "huggingface", uuid.uuid4().hex, payload, huggingface_event(payload))


def _unverified_event(source: str, body: bytes) -> str | None:
    """The event a refused body names, for the deliveries page only: never acted upon."""
    try:
        payload = loads(body)
    except JsonRefused:
        return None
    if not isinstance(payload, dict):
        return None
    return _storable(EVENT_NAMES[source](payload), 100)


def _storable(text: str, limit: int) -> str:
    """The sender's text cut to its column, without the NUL PostgreSQL cannot store."""
    return text.replace("\x00", "")[:limit]


def record_refusal(
    session: Session,
    source: str,
    refused: ApiError,
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    """Keep this refusal beside the latest others of its source, dropping the oldest."""
    delivery_id = headers.get(MLFLOW_DELIVERY) if source == "mlflow" else None
    session.add(
        WebhookRefusal(
            source=source,
            reason=_storable(refused.code, 64),
            message=_storable(refused.message, 500),
            delivery_id=_storable(delivery_id, 200) if delivery_id else None,
            event=_unverified_event(source, body),
        )
    )
    session.flush()
    oldest_kept = session.scalar(
        select(WebhookRefusal.id)
        .where(WebhookRefusal.source == source)
        .order_by(WebhookRefusal.id.desc())
        .offset(KEPT_REFUSALS - 1)
        .limit(1)
    )
    if oldest_kept is not None:
        session.execute(
            delete(WebhookRefusal).where(
                WebhookRefusal.source == source, WebhookRefusal.id < oldest_kept
            )
        )


def dispatch(celery: Celery, settings: Settings, key: str) -> None:
    celery.send_task(HANDLE_REGISTRY_EVENT, args=[key], queue=settings.queue)
