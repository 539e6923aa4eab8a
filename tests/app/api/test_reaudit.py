"""Re-audits on demand: a fresh audit of a version a policy covers, once per key, admins only."""

from __future__ import annotations

import pytest

from app.keys import create_key
from core.models import Audit
from tests.core.inspection.test_huggingface import SHA, _cache_with

URI = f"hf:acme/support-lm@{SHA}"


@pytest.fixture
def stack(make_stack, tiny_lm, tmp_path):
    cache = tmp_path / "hub"
    _cache_with(tiny_lm.model_dir, cache, "acme/support-lm")
    return make_stack(hf_cache_dir=str(cache))


@pytest.fixture
def policy(stack, tiny_lm) -> dict:
    body = {
        "name": "acme-hub",
        "source": "huggingface",
        "model_pattern": "acme/*",
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
        "thresholds": [{"metric": "loss.mean_loss", "op": ">=", "value": 0.5}],
    }
    created = stack.client.post("/v1/policies", headers=stack.headers, json=body)
    assert created.status_code == 201, created.text
    return created.json()


def _reaudit(stack, policy_id: str, body: dict, headers: dict | None = None):
    return stack.client.post(
        f"/v1/policies/{policy_id}/reaudit", headers=headers or stack.headers, json=body
    )


def test_each_key_starts_one_fresh_audit_of_the_version(stack, policy) -> None:
    first = _reaudit(stack, policy["id"], {"model_uri": URI, "key": "after-retraining"})
    assert first.status_code == 201, first.text
    audit = first.json()
    assert audit["model_uri"] == URI and audit["policy_id"] == policy["id"]
    assert audit["labels"] == {"reaudit": "after-retraining", "policy": "acme-hub"}
    assert audit["status"] == "queued"
    again = _reaudit(stack, policy["id"], {"model_uri": URI, "key": "after-retraining"})
    assert again.status_code == 200 and again.json()["id"] == audit["id"]
    other = _reaudit(stack, policy["id"], {"model_uri": URI, "key": "new-data"})
    assert other.status_code == 201 and other.json()["id"] != audit["id"]
    # Without a key, every call is a re-audit of its own.
    unkeyed = [_reaudit(stack, policy["id"], {"model_uri": URI}) for _ in range(2)]
    assert [r.status_code for r in unkeyed] == [201, 201]
    assert unkeyed[0].json()["id"] != unkeyed[1].json()["id"]
    with stack.db.session() as session:
        assert session.query(Audit).filter(Audit.model_uri == URI).count() == 4


def test_refusals_say_what_to_change_and_start_nothing(stack, policy) -> None:
    with stack.db.session() as session:
        submit_key = create_key(session, "ci", "submit")
    forbidden = _reaudit(
        stack, policy["id"], {"model_uri": URI}, {"Authorization": f"Bearer {submit_key}"}
    )
    assert forbidden.status_code == 403
    assert stack.client.post(f"/v1/policies/{policy['id']}/reaudit", json={}).status_code == 401
    cases = [
        ("nope", {"model_uri": URI}, 404, "not_found"),
        (policy["id"], {"model_uri": f"hf:other/lm@{SHA}"}, 422, "model_not_matched"),
        (policy["id"], {"model_uri": "mlflow:models:/acme/1"}, 422, "invalid_model"),
        (policy["id"], {"model_uri": URI, "key": ""}, 422, "invalid_request"),
        (policy["id"], {"model_uri": URI, "extra": 1}, 422, "invalid_request"),
    ]
    for policy_id, body, status, code in cases:
        refused = _reaudit(stack, policy_id, body)
        assert refused.status_code == status, (body, refused.text)
        assert refused.json()["error"]["code"] == code
    stack.client.patch(
        f"/v1/policies/{policy['id']}", headers=stack.headers, json={"enabled": False}
    )
    disabled = _reaudit(stack, policy["id"], {"model_uri": URI})
    assert disabled.status_code == 409 and disabled.json()["error"]["code"] == "policy_disabled"
    assert "enable it" in disabled.json()["error"]["message"]
    with stack.db.session() as session:
        assert session.query(Audit).count() == 0
