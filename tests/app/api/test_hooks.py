"""Registry webhooks: only correctly signed, fresh, first-time deliveries get in."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature
from sqlalchemy import func, select

from core.models import WebhookDelivery
from tests.app.api.test_audits import queued_messages
from tests.flows import scrape

SECRET = "mlflow-hook-secret"
HF_SECRET = "hub-hook-secret"


@pytest.fixture
def stack(make_stack):
    return make_stack(mlflow_webhook_secret=SECRET, hf_webhook_secret=HF_SECRET)


def _payload(name: str = "support-bot", version: str = "1") -> str:
    return json.dumps(
        {
            "entity": "model_version",
            "action": "created",
            "timestamp": "2026-11-28T00:00:00+00:00",
            "data": {"name": name, "version": version, "source": "models:/m-1", "run_id": "r"},
        }
    )


def _signed(body: str, *, secret: str = SECRET, age: int = 0, delivery: str | None = None):
    delivery = delivery or str(uuid.uuid4())
    timestamp = str(int(time.time()) - age)
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": timestamp,
        # MLflow's own signing code: what a real server sends.
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery, timestamp, body),
    }


def _deliveries(stack) -> int:
    with stack.db.session() as session:
        return session.scalar(select(func.count()).select_from(WebhookDelivery))


def test_a_signed_delivery_is_accepted_and_queued(stack) -> None:
    body = _payload()
    response = stack.client.post("/v1/hooks/mlflow", content=body, headers=_signed(body))
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    assert _deliveries(stack) == 1 and queued_messages(stack) == 1


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (lambda body: _signed(body, secret="forged"), "bad_signature"),
        (lambda body: _signed(body, age=3600), "stale_timestamp"),
        (lambda body: {**_signed(body), "X-MLflow-Signature": ""}, "unsigned"),
        (lambda body: _signed(body + " "), "bad_signature"),  # signed another body
    ],
)
def test_forged_or_stale_deliveries_are_refused_and_nothing_is_queued(stack, headers, code) -> None:
    body = _payload()
    response = stack.client.post("/v1/hooks/mlflow", content=body, headers=headers(body))
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == code
    assert _deliveries(stack) == 0 and queued_messages(stack) == 0


def test_a_replayed_delivery_id_is_refused(stack) -> None:
    body = _payload()
    headers = _signed(body, delivery="d-1")
    assert stack.client.post("/v1/hooks/mlflow", content=body, headers=headers).status_code == 202
    again = stack.client.post(
        "/v1/hooks/mlflow", content=body, headers=_signed(body, delivery="d-1")
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "replayed_delivery"
    assert _deliveries(stack) == 1 and queued_messages(stack) == 1


def test_huggingface_needs_the_shared_secret(stack) -> None:
    body = json.dumps(
        {
            "event": {"action": "update", "scope": "repo.content"},
            "repo": {"type": "model", "name": "org/lm", "headSha": "abc123"},
        }
    )
    wrong = stack.client.post(
        "/v1/hooks/huggingface", content=body, headers={"X-Webhook-Secret": "nope"}
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_secret"
    assert _deliveries(stack) == 0 and queued_messages(stack) == 0
    right = stack.client.post(
        "/v1/hooks/huggingface", content=body, headers={"X-Webhook-Secret": HF_SECRET}
    )
    assert right.status_code == 202 and _deliveries(stack) == 1


def test_an_unconfigured_hook_refuses_everything(make_stack) -> None:
    stack = make_stack()
    body = _payload()
    response = stack.client.post("/v1/hooks/mlflow", content=body, headers=_signed(body))
    # Not a server fault to retry: this service has no such hook until it is configured.
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "hook_not_configured"


def test_bad_signatures_are_counted_not_stored(stack) -> None:
    body = _payload()
    for _ in range(50):
        forged = stack.client.post(
            "/v1/hooks/mlflow", content=body, headers=_signed(body, secret="wrong-secret-123")
        )
        assert forged.status_code == 401
    stack.client.post("/v1/hooks/huggingface", content=body, headers={"X-Webhook-Secret": "no"})
    assert _deliveries(stack) == 0
    metrics = scrape(stack.client, stack.headers)
    assert metrics['memaudit_refused_total{event="webhook.mlflow.bad_signature"}'] == 50
    assert metrics['memaudit_refused_total{event="webhook.huggingface.bad_secret"}'] == 1
