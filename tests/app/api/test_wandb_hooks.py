"""W&B registry automations at the door: only a delivery with the webhook's access token (and,
with a signing secret set, W&B's signature of its body) gets in, once per (artifact version,
event, alias); a team without the W&B grant cannot audit a W&B version.

Deliveries are made as W&B's documentation says it calls a webhook (tests/wandb_fake.py signs
with openssl, W&B's own recipe); W&B itself cannot be reached here.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.keys import create_key
from app.teams import create_team
from app.wandb_hooks import RETRY_STALE_AFTER, verify_wandb, wandb_signature
from core.db import utcnow
from core.errors import ApiError
from core.inspection.wandb_models import ArtifactVersion
from core.models import WebhookDelivery, WebhookRefusal
from tests.app.api.test_audits import queued_messages
from tests.wandb_fake import deliver, openssl_signature
from worker.model_registry import mark_failed

TOKEN = "wandb-webhook-access-token-0123456789"
SECRET = "wandb-webhook-signing-secret-0123456789"
URL = "/v1/hooks/wandb"
VERSION = ArtifactVersion("acme", "wandb-registry-model", "support-lm", "v3")


@pytest.fixture
def stack(make_stack):
    return make_stack(wandb_webhook_token=TOKEN, wandb_webhook_secret=SECRET)


def _payload(event: str = "LINK_ARTIFACT", alias: str = "", **fields: str) -> dict[str, str]:
    return {
        "event_type": event,
        "artifact_version_string": VERSION.name,
        "artifact_version": "wandb-artifact://_id/QXJ0aWZhY3Q6NTE3",
        "artifact_collection_name": VERSION.collection,
        "entity_name": VERSION.entity,
        "project_name": VERSION.project,
        "alias": alias,
        "event_author": "ada",
        **fields,
    }


def _deliveries(stack) -> list[WebhookDelivery]:
    with stack.db.session() as session:
        return list(session.scalars(select(WebhookDelivery)))


def _refusals(stack) -> list[tuple[str, str]]:
    with stack.db.session() as session:
        return list(session.execute(select(WebhookRefusal.source, WebhookRefusal.reason)))


def test_the_signature_is_what_w_and_b_documents(stack) -> None:
    body = b'{"event_type": "LINK_ARTIFACT"}'
    assert wandb_signature(SECRET, body) == openssl_signature(SECRET, body)
    assert wandb_signature(SECRET, body) != openssl_signature(SECRET, body + b" ")


def test_a_delivery_with_token_and_signature_is_recorded_and_queued(stack) -> None:
    # A payload given `${ACCESS_TOKEN}` would carry the token: it is never stored.
    response = deliver(
        stack.client, URL, _payload(token=TOKEN, extra="x"), token=TOKEN, secret=SECRET
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    [row] = _deliveries(stack)
    assert row.source == "wandb" and row.event == "LINK_ARTIFACT"
    assert row.payload == _payload()
    assert queued_messages(stack) == 1


@pytest.mark.parametrize(
    ("token", "secret", "reason"),
    [
        ("not-the-token", SECRET, "bad_token"),
        ("", SECRET, "bad_token"),
        (TOKEN, "not-the-secret", "bad_signature"),
        (TOKEN, None, "unsigned"),
    ],
)
def test_a_delivery_without_the_token_or_signature_is_refused(stack, token, secret, reason):
    response = deliver(stack.client, URL, _payload(), token=token, secret=secret)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == reason
    assert TOKEN not in response.text and SECRET not in response.text
    assert _deliveries(stack) == [] and queued_messages(stack) == 0
    assert _refusals(stack) == [("wandb", reason)]  # shown on the deliveries page
    listed = stack.client.get("/v1/deliveries", headers=stack.headers, params={"source": "wandb"})
    assert listed.json()["data"][0]["outcome"] == "refused"


def test_a_body_changed_after_signing_is_refused(stack) -> None:
    signed = openssl_signature(SECRET, b'{"event_type": "LINK_ARTIFACT"}')
    response = stack.client.post(
        URL,
        content=b'{"event_type": "ADD_ARTIFACT_ALIAS"}',
        headers={"Authorization": f"Bearer {TOKEN}", "X-Wandb-Signature": signed},
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == "bad_signature"


def test_without_a_signing_secret_the_token_alone_is_checked() -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    verify_wandb(headers, b"{}", TOKEN, "")  # no secret configured: no signature asked for
    with pytest.raises(ApiError) as refused:
        verify_wandb({"authorization": "Bearer nope"}, b"{}", TOKEN, "")
    assert refused.value.code == "bad_token"
    with pytest.raises(ApiError) as off:
        verify_wandb(headers, b"{}", "", "")
    assert off.value.status == 404


def test_a_replayed_delivery_starts_nothing_but_another_event_of_the_version_does(stack):
    first = deliver(stack.client, URL, _payload(), token=TOKEN, secret=SECRET)
    assert first.status_code == 202
    again = deliver(stack.client, URL, _payload(), token=TOKEN, secret=SECRET)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "duplicate"
    assert again.json()["delivery"] == first.json()["delivery"]
    assert again.json()["earlier"]["status"] == "received"
    assert len(_deliveries(stack)) == 1 and queued_messages(stack) == 1

    # The same version with an alias added is an event of its own, and so is each alias.
    alias_events = [
        _payload("ADD_ARTIFACT_ALIAS", "production"),
        _payload("ADD_ARTIFACT_ALIAS", "staging"),
        # W&B may render the alias where the version goes: W&B's id of the version tells it.
        _payload(
            "ADD_ARTIFACT_ALIAS",
            "candidate",
            artifact_version_string=f"{VERSION.path}:candidate",
        ),
    ]
    keys = set()
    for payload in alias_events:
        response = deliver(stack.client, URL, payload, token=TOKEN, secret=SECRET)
        assert response.status_code == 202, response.text
        keys.add(response.json()["delivery"])
    assert len(keys) == 3 and first.json()["delivery"] not in keys
    replay = deliver(stack.client, URL, alias_events[0], token=TOKEN, secret=SECRET)
    assert replay.json()["status"] == "duplicate"
    # Another version with the same alias is another event.
    other = _payload(
        "ADD_ARTIFACT_ALIAS",
        "production",
        artifact_version_string=f"{VERSION.path}:v4",
        artifact_version="wandb-artifact://_id/QXJ0aWZhY3Q6NTE4",
    )
    assert deliver(stack.client, URL, other, token=TOKEN, secret=SECRET).status_code == 202
    assert len(_deliveries(stack)) == 5 and queued_messages(stack) == 5
    assert {d.event for d in _deliveries(stack)} == {
        "LINK_ARTIFACT",
        "ADD_ARTIFACT_ALIAS(production)",
        "ADD_ARTIFACT_ALIAS(staging)",
        "ADD_ARTIFACT_ALIAS(candidate)",
    }


def _set(stack, key: str, **values: object) -> None:
    with stack.db.session() as session:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id == key).values(**values))


def test_an_event_whose_first_delivery_was_never_handled_is_queued_again(stack) -> None:
    """A failed or lost first delivery must not turn the redelivery into a dropped duplicate:
    the version would never be audited."""
    key = deliver(stack.client, URL, _payload(), token=TOKEN, secret=SECRET).json()["delivery"]
    mark_failed(stack.db, key, "OperationalError: the database went away")  # as the task does
    [failed] = _deliveries(stack)
    assert failed.status == "failed" and "went away" in failed.detail["reason"]

    retried = deliver(stack.client, URL, _payload(), token=TOKEN, secret=SECRET)
    assert retried.status_code == 202, retried.text
    assert retried.json() == {"delivery": key, "status": "accepted", "retry": "1"}
    [row] = _deliveries(stack)
    assert row.status == "received" and row.detail["retries"] == 1
    assert row.detail["retried"] == {
        "status": "failed",
        "reason": "OperationalError: the database went away",
    }
    assert queued_messages(stack) == 2
    listed = stack.client.get("/v1/deliveries", headers=stack.headers, params={"source": "wandb"})
    assert "retry 1; the earlier was failed" in listed.json()["data"][0]["reason"]

    # Queued moments ago: a redelivery now is a duplicate, and queues nothing.
    again = deliver(stack.client, URL, _payload(), token=TOKEN, secret=SECRET)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert queued_messages(stack) == 2

    # Still `received` past RETRY_STALE_AFTER: its task was lost, so it is queued again.
    _set(stack, key, received_at=utcnow() - RETRY_STALE_AFTER - timedelta(seconds=1))
    lost = deliver(stack.client, URL, _payload(), token=TOKEN, secret=SECRET)
    assert lost.status_code == 202 and lost.json()["retry"] == "2"
    [row] = _deliveries(stack)
    assert row.detail == {"retries": 2, "retried": {"status": "received", "reason": None}}
    assert queued_messages(stack) == 3

    # Handled, however long ago: a duplicate.
    _set(stack, key, status="processed", received_at=utcnow() - timedelta(days=1))
    handled = deliver(stack.client, URL, _payload(), token=TOKEN, secret=SECRET)
    assert handled.status_code == 200 and handled.json()["status"] == "duplicate"
    assert len(_deliveries(stack)) == 1 and queued_messages(stack) == 3


def test_an_unconfigured_hook_is_not_found(make_stack) -> None:
    stack = make_stack()
    response = deliver(stack.client, URL, _payload(), token=TOKEN, secret=SECRET)
    assert response.status_code == 404
    assert "MEMAUDIT_WANDB_WEBHOOK_TOKEN" in response.json()["error"]["message"]


def test_a_team_without_the_wandb_grant_cannot_audit_a_wandb_version(stack, tiny_lm) -> None:
    with stack.db.session() as session:
        granted = create_team(
            session,
            stack.settings,
            "granted",
            data_folders=["*"],
            wandb_artifacts=["acme/wandb-registry-model/*"],
        )
        other = create_team(
            session,
            stack.settings,
            "other",
            data_folders=["*"],
            hf_repos=["*"],
            mlflow_models=["*"],
        )
        keys = {
            "granted": create_key(session, "g", "submit", granted.id),
            "other": create_key(session, "o", "submit", other.id),
        }
    body = {
        "model": {"uri": f"wandb:{VERSION.name}"},
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
    }

    def submit(team: str, uri: str):
        return stack.client.post(
            "/v1/audits",
            headers={"Authorization": f"Bearer {keys[team]}"},
            json={**body, "model": {"uri": uri}},
        )

    refused = submit("other", f"wandb:{VERSION.name}")
    assert refused.status_code == 422, refused.text
    assert "not granted" in refused.json()["error"]["message"]
    elsewhere = submit("granted", "wandb:acme/other-project/support-lm:v3")
    assert elsewhere.status_code == 422 and "not granted" in elsewhere.text
    alias = submit("granted", f"wandb:{VERSION.path}:production")
    assert alias.status_code == 422 and "version number" in alias.text
    accepted = submit("granted", f"wandb:{VERSION.name}")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["model_family"] == f"wandb:{VERSION.path}"
    listed = stack.client.get("/v1/teams", headers=stack.headers).json()["data"]
    grants = {team["name"]: team["wandb_artifacts"] for team in listed}
    assert grants == {"default": ["*"], "granted": ["acme/wandb-registry-model/*"], "other": []}
