"""Webhook health: accepted, refused and reconciled deliveries listed for an admin, paged."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.hooks import KEPT_REFUSALS
from app.keys import create_key
from core.models import WebhookDelivery, WebhookRefusal
from tests.app.api.test_hooks import HF_SECRET, SECRET, _payload, _signed
from worker.model_registry import handle_delivery


@pytest.fixture
def stack(make_stack):
    return make_stack(mlflow_webhook_secret=SECRET, hf_webhook_secret=HF_SECRET)


def _listed(stack, **params) -> dict:
    response = stack.client.get("/v1/deliveries", headers=stack.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_wrong_secret_is_listed_with_its_reason_and_which_secret_to_compare(stack) -> None:
    body = _payload()
    forged = stack.client.post(
        "/v1/hooks/mlflow",
        content=body,
        headers=_signed(body, secret="not-the-secret", delivery="d-7"),
    )
    assert forged.status_code == 401
    message = forged.json()["error"]["message"]
    assert "MEMAUDIT_MLFLOW_WEBHOOK_SECRET" in message and SECRET not in message
    listed = _listed(stack)
    assert listed["count"] == 1
    (row,) = listed["data"]
    assert row["outcome"] == "refused" and row["source"] == "mlflow"
    assert row["reason"].startswith("bad_signature: the signature does not match")
    assert row["delivery_id"] == "d-7" and row["event"] == "model_version.created"
    assert row["audits"] == []
    assert listed["refused"] == {"mlflow": {"bad_signature": 1}}
    # Nothing of the body is kept: only the names above.
    with stack.db.session() as session:
        kept = session.scalars(select(WebhookRefusal)).one()
        assert "support-bot" not in json.dumps(
            {c: str(getattr(kept, c)) for c in ("reason", "message", "delivery_id", "event")}
        )


def test_a_refused_delivery_id_never_blocks_the_genuine_one(stack) -> None:
    body = _payload()
    stack.client.post(
        "/v1/hooks/mlflow", content=body, headers=_signed(body, secret="forged", delivery="d-1")
    )
    genuine = stack.client.post(
        "/v1/hooks/mlflow", content=body, headers=_signed(body, delivery="d-1")
    )
    assert genuine.status_code == 202, genuine.text
    outcomes = [row["outcome"] for row in _listed(stack)["data"]]
    assert outcomes == ["received", "refused"]  # newest first


def test_refusals_are_counted_per_reason_and_only_the_latest_kept(stack) -> None:
    body = _payload()
    for _ in range(KEPT_REFUSALS + 5):
        stack.client.post("/v1/hooks/mlflow", content=body, headers=_signed(body, secret="x"))
    stack.client.post("/v1/hooks/mlflow", content=body, headers=_signed(body, age=3600))
    stack.client.post("/v1/hooks/huggingface", content="{}", headers={"X-Webhook-Secret": "no"})
    with stack.db.session() as session:
        per_source = dict(
            session.execute(
                select(WebhookRefusal.source, func.count()).group_by(WebhookRefusal.source)
            ).all()
        )
    assert per_source == {"mlflow": KEPT_REFUSALS, "huggingface": 1}
    listed = _listed(stack, outcome="refused", source="mlflow", limit=10)
    assert listed["count"] == KEPT_REFUSALS and len(listed["data"]) == 10
    assert listed["data"][0]["reason"].startswith("stale_timestamp")  # the newest kept
    assert listed["refused"]["mlflow"] == {"bad_signature": KEPT_REFUSALS + 5, "stale_timestamp": 1}
    hub = _listed(stack, source="huggingface")["data"][0]
    assert "MEMAUDIT_HF_WEBHOOK_SECRET" in hub["reason"] and HF_SECRET not in hub["reason"]


def test_accepted_deliveries_show_their_outcome_and_page(stack) -> None:
    celery = stack.client.app.state.celery
    keys = []
    for version in ("1", "2", "3"):
        body = _payload(version=version)
        response = stack.client.post("/v1/hooks/mlflow", content=body, headers=_signed(body))
        keys.append(response.json()["delivery"])
    tag = json.dumps(
        {"entity": "model_version_tag", "action": "set", "data": {"key": "memaudit.x"}}
    )
    keys.append(
        stack.client.post("/v1/hooks/mlflow", content=tag, headers=_signed(tag)).json()["delivery"]
    )
    for key in keys[2:]:
        handle_delivery(stack.db, stack.settings, celery, key)
    first = _listed(stack, limit=2)
    assert first["count"] == 4 and [r["id"] for r in first["data"]] == keys[::-1][:2]
    ignored, processed = first["data"]
    assert ignored["outcome"] == "ignored" and ignored["reason"] == "our own memaudit.* tag"
    assert processed["outcome"] == "processed" and processed["audits"] == []
    assert processed["model_uri"] == "mlflow:models:/support-bot/3"
    assert "no enabled policy matches" in processed["reason"]
    second = _listed(stack, limit=2, offset=2)
    assert [r["id"] for r in second["data"]] == keys[::-1][2:]
    assert {r["outcome"] for r in second["data"]} == {"received"}
    assert _listed(stack, outcome="ignored")["count"] == 1
    assert _listed(stack, source="huggingface")["count"] == 0


def test_deliveries_are_for_admins_only(stack) -> None:
    with stack.db.session() as session:
        reader = create_key(session, "reader", "read")
    assert stack.client.get("/v1/deliveries").status_code == 401
    refused = stack.client.get("/v1/deliveries", headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403
    bad = stack.client.get("/v1/deliveries", headers=stack.headers, params={"outcome": "lost"})
    assert bad.status_code == 422


def test_an_unconfigured_hook_is_kept_as_refused_too(make_stack) -> None:
    stack = make_stack()
    body = _payload()
    assert (
        stack.client.post("/v1/hooks/mlflow", content=body, headers=_signed(body)).status_code
        == 404
    )
    (row,) = _listed(stack)["data"]
    assert row["reason"].startswith("hook_not_configured")
    with stack.db.session() as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


@pytest.mark.postgres
def test_the_list_pages_over_both_tables_on_postgres(make_stack, postgres_url) -> None:
    stack = make_stack(database_url=postgres_url, mlflow_webhook_secret=SECRET)
    body = _payload()
    stack.client.post("/v1/hooks/mlflow", content=body, headers=_signed(body, secret="x"))
    stack.client.post("/v1/hooks/mlflow", content=body, headers=_signed(body))
    listed = _listed(stack, limit=1, offset=1)
    assert listed["count"] == 2 and listed["data"][0]["outcome"] == "refused"
    assert _listed(stack, outcome="received")["count"] == 1


@pytest.mark.postgres
def test_a_refused_body_naming_a_nul_is_still_refused_and_kept_on_postgres(
    make_stack, postgres_url
) -> None:
    """The event a refused body names is the sender's text: PostgreSQL cannot store a NUL, and
    a forged delivery must still get its 401 (not a 500) and be listed."""
    stack = make_stack(database_url=postgres_url, mlflow_webhook_secret=SECRET)
    body = json.dumps({"entity": "model_version\x00", "action": "created\x00"})
    forged = stack.client.post("/v1/hooks/mlflow", content=body, headers=_signed(body, secret="x"))
    assert forged.status_code == 401, forged.text
    (row,) = _listed(stack)["data"]
    assert row["outcome"] == "refused" and "\x00" not in (row["event"] or "")


def test_a_refusal_pruned_while_the_page_is_read_is_left_out(stack, monkeypatch) -> None:
    """Refusals are pruned on every insert: one listed by the page's keys may be gone when its
    row is read (a flood of forged deliveries while an admin looks), and the page still shows."""
    from app import deliveries

    body = _payload()
    stack.client.post("/v1/hooks/mlflow", content=body, headers=_signed(body, secret="x"))
    page_keys = deliveries._page_keys

    def with_a_pruned_one(*args):
        keys, count = page_keys(*args)
        return [("refusal", "999999"), *keys], count + 1

    monkeypatch.setattr(deliveries, "_page_keys", with_a_pruned_one)
    listed = _listed(stack)
    assert [row["outcome"] for row in listed["data"]] == ["refused"]
