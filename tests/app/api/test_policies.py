"""Audit policies: admin CRUD, validation up front, and the verdict finalize records."""

from __future__ import annotations

import pytest

from app.keys import create_key
from bench.report_data import seed_audit
from core.models import Audit, AuditPolicy
from tests.flows import session_cookie
from worker.finalize import finalize_audit


@pytest.fixture
def stack(make_stack):
    return make_stack()


@pytest.fixture
def body(tiny_lm) -> dict:
    return {
        "name": "support-bots",
        "source": "mlflow",
        "model_pattern": "support-*",
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "extraction", "params": {"suffix_tokens": 16, "prefix_tokens": 10}}],
        "thresholds": [
            {"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": 0.01},
            {"metric": "membership.minkpp_0.2.auc", "op": "<=", "value": 0.6},
        ],
    }


def test_admin_creates_reads_updates_and_deletes_a_policy(stack, body) -> None:
    client, headers = stack.client, stack.headers
    created = client.post("/v1/policies", headers=headers, json=body)
    assert created.status_code == 201, created.text
    policy = created.json()
    assert policy["checks"][0]["params"]["suffix_tokens"] == 16  # defaults filled in
    assert policy["checks"][0]["params"]["prefix_tokens"] == 10
    assert client.get(f"/v1/policies/{policy['id']}", headers=headers).json() == policy
    assert client.get("/v1/policies", headers=headers).json()["count"] == 1
    patched = client.patch(
        f"/v1/policies/{policy['id']}", headers=headers, json={"enabled": False}
    ).json()
    assert patched["enabled"] is False and patched["thresholds"] == policy["thresholds"]
    assert client.delete(f"/v1/policies/{policy['id']}", headers=headers).status_code == 204
    assert client.get(f"/v1/policies/{policy['id']}", headers=headers).status_code == 404


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        (
            {"thresholds": [{"metric": "extraction.bogus", "op": "<=", "value": 1}]},
            422,
            "unknown_metric",
        ),
        (
            {"thresholds": [{"metric": "loss.mean_loss", "op": "==", "value": 1}]},
            422,
            "invalid_request",
        ),
        ({"checks": [{"kind": "nope", "params": {}}]}, 422, "unknown_check_kind"),
        (
            {"checks": [{"kind": "extraction", "params": {"suffix_tokens": 0}}]},
            422,
            "invalid_params",
        ),
        ({"dataset": {"uri": "path:/etc/passwd"}}, 422, "invalid_dataset"),
        ({"source": "s3"}, 422, "invalid_request"),
    ],
)
def test_bad_policies_are_refused_and_nothing_is_stored(stack, body, change, status, code) -> None:
    response = stack.client.post("/v1/policies", headers=stack.headers, json={**body, **change})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    with stack.db.session() as session:
        assert session.query(AuditPolicy).count() == 0


def test_names_are_unique_and_only_admins_manage_policies(stack, body) -> None:
    assert stack.client.post("/v1/policies", headers=stack.headers, json=body).status_code == 201
    again = stack.client.post("/v1/policies", headers=stack.headers, json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "policy_exists"
    with stack.db.session() as session:
        submit_key = create_key(session, "ci", "submit")
    refused = stack.client.get("/v1/policies", headers={"Authorization": f"Bearer {submit_key}"})
    assert refused.status_code == 403


# The seeded audit's dataset cannot be read at finalize: its split is not assessed, so the
# membership condition is withheld and only a failing extraction condition decides.
@pytest.mark.parametrize(("limit", "expected"), [(0.99, "inconclusive"), (0.01, "fail")])
def test_finalize_records_the_policy_verdict(stack, body, limit, expected) -> None:
    body["thresholds"] = [
        {"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": limit},
        {"metric": "membership.minkpp_0.2.auc", "op": ">=", "value": 0.5},
    ]
    policy = stack.client.post("/v1/policies", headers=stack.headers, json=body).json()
    audit_id = seed_audit(stack.db, 200, status="running", strength=0.5)
    with stack.db.session() as session:
        session.get(Audit, audit_id).policy_id = policy["id"]
    assert finalize_audit(stack.db, stack.settings, audit_id).status == "succeeded"
    with stack.db.session() as session:  # counted once at finalize for the records table
        counts = session.get(Audit, audit_id).row_counts
    assert counts == {
        c: {"all": 200, "true": 100, "false": 100} for c in ("extraction", "membership")
    }
    audit = stack.client.get(f"/v1/audits/{audit_id}", headers=stack.headers).json()
    verdict = audit["verdict"]
    assert verdict["status"] == expected
    rate = audit["summary"]["extraction"]["all"]["greedy_rate"]
    assert verdict["results"][0] == {
        "metric": "extraction.greedy_extraction_rate",
        "op": "<=",
        "threshold": limit,
        "value": rate,
        "passed": rate <= limit,
        "reading": None,
    }
    assert verdict["results"][1]["reading"] == "inconclusive"
    assert verdict["results"][1]["passed"] is None and verdict["promotion"] == "blocked"
    assert 0.01 < rate < 0.99
    session_cookie(stack.client, stack.headers["Authorization"].split()[1])
    page = stack.client.get(f"/audits/{audit_id}").text
    assert f'data-verdict="{expected}"' in page and "extraction.greedy_extraction_rate" in page
