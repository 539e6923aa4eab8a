"""Weights & Biases registry automations received: authenticated, recorded once per event.

What W&B sends, from its documentation (docs.wandb.ai, "Create a webhook automation"):

- "W&B sets the `Authorization: Bearer` HTTP header to the access token" configured on the
  webhook: compared in constant time with MEMAUDIT_WANDB_WEBHOOK_TOKEN, and required;
- where the webhook has a secret, "Wandb includes the X-Wandb-Signature in the header computed
  from the payload and the shared secret key associated with the webhook using the HMAC with
  SHA-256 algorithm" (its troubleshooting script: `openssl dgst -sha256 -hmac "$SECRET"
  -binary | base64` over the payload): base64 of the HMAC-SHA256 of the raw body, required and
  compared in constant time when MEMAUDIT_WANDB_WEBHOOK_SECRET is set;
- the body is the JSON payload the automation is given, its `${...}` variables rendered:
  README's template names `event_type` ("LINK_ARTIFACT" or "ADD_ARTIFACT_ALIAS"),
  `artifact_version_string` (`<entity>/<project>/<collection>:<version or alias>`),
  `artifact_version` (the version's id, `wandb-artifact://_id/...`), `alias` and
  `event_author`. Only these fields are stored: a payload given `${ACCESS_TOKEN}` or another
  secret keeps it out of the database.

W&B sends no delivery id and no timestamp, so a delivery's id is its event: one per (artifact
version, event, alias). The same event delivered again (a retry, a replay) is answered 200
with the first delivery's state and starts nothing; another alias on the same version, or the
version's link event, is an event of its own. Unless the first delivery was never handled: its
handling failed, or it is still `received` after RETRY_STALE_AFTER (its task was lost). Then the
delivery is recorded as a retry and queued again, so a version is never left unaudited; a
replay of it stays harmless, audits being idempotent per policy and version.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from app.hooks import json_object, wandb_event
from core.config import Settings
from core.db import Database, utcnow
from core.errors import ApiError
from core.inspection import wandb_models
from core.inspection.errors import ModelError
from core.models import WebhookDelivery

SOURCE = "wandb"
WANDB_SIGNATURE = "x-wandb-signature"
EVENTS = ("LINK_ARTIFACT", "ADD_ARTIFACT_ALIAS")
# The payload fields memaudit reads (README's template); anything else is dropped unread.
FIELDS = (
    "event_type",
    "artifact_version_string",
    "artifact_version",
    "artifact_collection_name",
    "entity_name",
    "project_name",
    "alias",
    "event_author",
)
MAX_FIELD_CHARS = 500
# A delivery still `received` this long after it was queued was lost (a worker died holding it,
# the broker dropped it): the same event delivered again is queued again. Handling one takes
# seconds; a queue behind long audits may hold it longer, and a second task is harmless.
RETRY_STALE_AFTER = timedelta(minutes=5)


def wandb_signature(secret: str, body: bytes) -> str:
    """X-Wandb-Signature as W&B computes it: base64 of the HMAC-SHA256 of the raw body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_wandb(headers: Mapping[str, str], body: bytes, token: str, secret: str) -> None:
    """Refuse (ApiError) a delivery without the webhook's access token, or, when a signing
    secret is configured, without its signature."""
    if not token:
        raise ApiError(
            404,
            "hook_not_configured",
            "this service has no W&B webhook; set MEMAUDIT_WANDB_WEBHOOK_TOKEN to enable it",
        )
    scheme, _, presented = headers.get("authorization", "").partition(" ")
    presented = presented.strip() if scheme.lower() == "bearer" else ""
    if not hmac.compare_digest(presented.encode(), token.encode()):
        raise ApiError(
            401,
            "bad_token",
            "Authorization: Bearer does not match: compare the webhook's access token in W&B "
            "with MEMAUDIT_WANDB_WEBHOOK_TOKEN on this service",
        )
    if not secret:
        return
    signature = headers.get(WANDB_SIGNATURE, "").strip()
    if not signature:
        raise ApiError(
            401,
            "unsigned",
            "X-Wandb-Signature needed: give the webhook in W&B the secret set in "
            "MEMAUDIT_WANDB_WEBHOOK_SECRET",
        )
    if not hmac.compare_digest(wandb_signature(secret, body).encode(), signature.encode()):
        raise ApiError(
            401,
            "bad_signature",
            "the signature does not match: compare the webhook's secret in W&B with "
            "MEMAUDIT_WANDB_WEBHOOK_SECRET on this service",
        )


def known_fields(payload: Mapping[str, Any]) -> dict[str, str]:
    """The fields memaudit reads, as bounded strings; the rest of the body is never kept."""
    return {
        name: str(payload[name])[:MAX_FIELD_CHARS]
        for name in FIELDS
        if isinstance(payload.get(name), str | int)
    }


def event_key(fields: Mapping[str, str]) -> str | None:
    """One id per (artifact version, event, alias); None when the payload does not name a
    version (a test delivery, a payload without README's template): it gets an id of its own.
    The version is `<path>:v<N>` when the version string names a number, else W&B's id of it
    (an alias event may render the alias in place of the number)."""
    event = fields.get("event_type", "")
    if event not in EVENTS:
        return None
    try:
        path, ref = wandb_models.parse_version_string(fields.get("artifact_version_string", ""))
        version = wandb_models.version_of(path, ref).name
    except ModelError:
        version = fields.get("artifact_version", "")
    if not version:
        return None
    alias = fields.get("alias", "") if event == "ADD_ARTIFACT_ALIAS" else ""
    identity = json.dumps([version, event, alias])
    return hashlib.sha256(identity.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Accepted:
    """A delivery let in: queued (`earlier` None; `retry` > 0 when it redelivers an event
    whose first delivery was never handled), or a duplicate of `earlier`, queued not again."""

    key: str
    earlier: dict[str, Any] | None = None
    retry: int = 0


def accept_wandb(
    db: Database, settings: Settings, headers: Mapping[str, str], body: bytes
) -> Accepted:
    """Record a new event; an event received before is a duplicate, unless its first delivery
    failed or was lost, when this one is recorded as a retry to queue again."""
    verify_wandb(headers, body, settings.wandb_webhook_token, settings.wandb_webhook_secret)
    fields = known_fields(json_object(body))
    key = f"{SOURCE}:{event_key(fields) or uuid.uuid4().hex}"
    try:
        with db.session() as session:
            session.add(
                WebhookDelivery(id=key, source=SOURCE, event=wandb_event(fields), payload=fields)
            )
    except IntegrityError:
        with db.session() as session:
            earlier = session.get(WebhookDelivery, key)
            if earlier is None:  # not the replay guard that refused it: a real failure
                raise
            state = {"status": earlier.status, "detail": earlier.detail or {}}
            if not _unhandled(earlier):
                return Accepted(key, earlier=state)
            retry = int((earlier.detail or {}).get("retries") or 0) + 1
            # What became of the earlier try, flat: retries never nest their histories.
            retried = {"status": earlier.status, "reason": (earlier.detail or {}).get("reason")}
            # Only the delivery that moves the row on queues it: of two at once, one retries.
            claimed = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == key,
                    WebhookDelivery.status == earlier.status,
                    WebhookDelivery.received_at == earlier.received_at,
                )
                .values(
                    status="received",
                    received_at=utcnow(),
                    detail={"retries": retry, "retried": retried},
                )
                .execution_options(synchronize_session=False)
            ).rowcount
        return Accepted(key, retry=retry) if claimed else Accepted(key, earlier=state)
    return Accepted(key)


def _unhandled(delivery: WebhookDelivery) -> bool:
    """Its handling failed, or it has waited so long for a worker that its task was lost."""
    return delivery.status == "failed" or (
        delivery.status == "received" and delivery.received_at < utcnow() - RETRY_STALE_AFTER
    )
