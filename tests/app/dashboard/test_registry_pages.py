"""The admin pages on registry integration: webhook deliveries and audit policies."""

from __future__ import annotations

import pytest

from bench.report_data import seed_audit
from core.models import Audit, AuditPolicy
from tests.app.api.test_hooks import SECRET, _payload, _signed
from tests.app.dashboard.test_routes import _cookie, _get


@pytest.fixture
def stack(make_stack):
    return make_stack(mlflow_webhook_secret=SECRET)


@pytest.fixture
def policy(stack, tiny_lm) -> dict:
    body = {
        "name": "support-bots",
        "source": "mlflow",
        "model_pattern": "support-*",
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}}],
        "thresholds": [{"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": 0.01}],
    }
    created = stack.client.post("/v1/policies", headers=stack.headers, json=body)
    assert created.status_code == 201, created.text
    return created.json()


def test_the_pages_and_their_links_are_for_admins_only(stack) -> None:
    reader = _cookie(stack, "read")
    for path in ("/deliveries", "/policies"):
        refused = _get(stack, path, reader)
        assert refused.status_code == 403 and "needs an admin key" in refused.text
        assert _get(stack, path).status_code == 303  # no session: the login page
    audits = _get(stack, "/audits", reader).text
    assert 'href="/policies"' not in audits and 'href="/deliveries"' not in audits
    admin = _get(stack, "/audits", _cookie(stack, "admin")).text
    assert 'href="/policies"' in admin and 'href="/deliveries"' in admin


def test_a_refused_delivery_shows_its_reason_and_no_audit(stack) -> None:
    body = _payload()
    stack.client.post(
        "/v1/hooks/mlflow", content=body, headers=_signed(body, secret="wrong", delivery="d-9")
    )
    stack.client.post("/v1/hooks/mlflow", content=body, headers=_signed(body))
    admin = _cookie(stack, "admin")
    page = _get(stack, "/deliveries", admin)
    assert page.status_code == 200
    assert 'data-outcome="refused"' in page.text and 'data-outcome="received"' in page.text
    assert "compare the webhook&#39;s secret in MLflow with MEMAUDIT_MLFLOW_WEBHOOK_SECRET" in (
        page.text
    )
    assert 'data-refused="mlflow.bad_signature"' in page.text and "d-9" in page.text
    assert "data-no-audit" in page.text
    assert page.headers["content-security-policy"]  # the dashboard's headers, as every page
    only_refused = _get(stack, "/deliveries?outcome=refused&source=mlflow", admin).text
    assert 'data-outcome="received"' not in only_refused
    assert _get(stack, "/deliveries?outcome=bogus", admin).status_code == 200  # ignored


def test_the_policies_page_lists_each_policy_with_its_latest_verdicts(stack, policy) -> None:
    audit_id = seed_audit(stack.db, 20, model_uri="mlflow:models:/support-bot/3")
    with stack.db.session() as session:
        audit = session.get(Audit, audit_id)
        audit.policy_id, audit.verdict = policy["id"], {"status": "fail", "results": []}
    admin = _cookie(stack, "admin")
    page = _get(stack, "/policies", admin).text
    assert 'data-policy="support-bots"' in page and "support-*" in page
    assert "extraction.greedy_extraction_rate &lt;= 0.01" in page
    assert f'href="/audits/{audit_id}"' in page and "mlflow:models:/support-bot/3" in page
    assert "<td data-verdict>fail</td>" in page and "data-enabled>enabled" in page
    assert "data-warnings" not in page
    assert "prefix_tokens=10" in page and "=None" not in page  # only the parameters set
    # The policy's warnings (an audit counted records too short in the model's tokens).
    with stack.db.session() as session:
        row = session.get(AuditPolicy, policy["id"])
        row.warnings = [
            {
                "source": "audit",
                "check": "extraction",
                "message": "records may be shorter than the windows",
                "model": "support-bot",
                "model_uri": "mlflow:models:/support-bot/3",
                "audit_id": audit_id,
            }
        ]
    warned = _get(stack, "/policies", admin).text
    assert "data-warnings" in warned and "records may be shorter than the windows" in warned
