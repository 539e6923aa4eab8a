"""Policies with a baseline: relative conditions validated up front, with one clear 422 each."""

from __future__ import annotations

import pytest
from markupsafe import escape

from core.models import AuditPolicy

RATE = "extraction.greedy_extraction_rate"


@pytest.fixture
def stack(make_stack):
    return make_stack()


@pytest.fixture
def body(tiny_lm) -> dict:
    return {
        "name": "gate",
        "source": "mlflow",
        "model_pattern": "support-*",
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "extraction", "params": {"suffix_tokens": 16, "prefix_tokens": 10}}],
        "baseline": "champion",
        "thresholds": [
            {
                "metric": RATE,
                "greater_is_better": False,
                "min_absolute_change": 0.01,
                "min_relative_change": 0.1,
                "level": 0.01,
                "op": "<=",
                "value": 0.5,
            }
        ],
    }


def test_a_policy_with_a_baseline_and_a_relative_condition_is_stored(stack, body) -> None:
    created = stack.client.post("/v1/policies", headers=stack.headers, json=body)
    assert created.status_code == 201, created.text
    policy = created.json()
    assert policy["baseline"] == "champion"
    assert policy["thresholds"] == body["thresholds"]
    absolute = {"metric": RATE, "op": "<=", "value": 0.5}
    patched = stack.client.patch(
        f"/v1/policies/{policy['id']}",
        headers=stack.headers,
        json={"baseline": "", "thresholds": [absolute]},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["baseline"] is None
    assert patched.json()["thresholds"] == [absolute]  # stored as before: no empty fields


def _condition(**fields) -> dict:
    return {"thresholds": [{"metric": RATE, **fields}]}


@pytest.mark.parametrize(
    ("change", "code", "says"),
    [
        ({"baseline": None}, "baseline_required", "needs the policy's `baseline`"),
        (_condition(op="<="), "invalid_condition", "`op` and `value` go together"),
        (_condition(min_absolute_change=0.01), "invalid_condition", "greater_is_better"),
        (_condition(), "invalid_condition", "give `op` and `value`, or greater_is_better"),
        (
            _condition(metric="membership.best.auc", greater_is_better=False),
            "not_comparable",
            "cannot be compared with the baseline record by record",
        ),
        (_condition(greater_is_better=False, level=0.9), "invalid_request", "level"),
        (_condition(greater_is_better=False, min_relative_change=2), "invalid_request", ""),
        (_condition(greater_is_better=False, min_absolute_change=-1), "invalid_request", ""),
        ({"baseline": "champ ion"}, "invalid_baseline", "MLflow alias"),
        ({"baseline": "audit:nope"}, "unknown_baseline", "no audit"),
        ({"source": "huggingface", "baseline": "main..x"}, "invalid_baseline", "revision"),
    ],
)
def test_bad_relative_conditions_are_refused(stack, body, change, code, says) -> None:
    if "thresholds" in change and "metric" not in change["thresholds"][0]:
        change["thresholds"][0]["metric"] = RATE
    response = stack.client.post("/v1/policies", headers=stack.headers, json={**body, **change})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert says in str(error)
    with stack.db.session() as session:
        assert session.query(AuditPolicy).count() == 0


def test_removing_the_baseline_of_relative_conditions_is_refused(stack, body) -> None:
    policy = stack.client.post("/v1/policies", headers=stack.headers, json=body).json()
    response = stack.client.patch(
        f"/v1/policies/{policy['id']}", headers=stack.headers, json={"baseline": ""}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "baseline_required"


def test_the_dashboard_shows_each_comparison_and_the_policys_baseline(stack, body) -> None:
    from bench.report_data import seed_audit
    from core.models import Audit
    from tests.flows import session_cookie

    policy = stack.client.post("/v1/policies", headers=stack.headers, json=body).json()
    audit_id = seed_audit(stack.db, 20)
    sentence = (
        "extraction rate 30.0% vs 10.0% on champion v7, 20 of 100 records newly extracted, "
        "McNemar p < 0.001: worse beyond noise, fail"
    )
    baseline = {
        "ref": "champion",
        "model_uri": "mlflow:models:/support-bot/7",
        "audit_id": "b" * 32,
    }
    with stack.db.session() as session:
        audit = session.get(Audit, audit_id)
        audit.policy_id, audit.baseline = policy["id"], baseline
        audit.verdict = {
            "status": "fail",
            "promotion": "blocked",
            "results": [],
            "comparisons": [{"metric": RATE, "status": "fail", "explanation": sentence}],
            "explanation": sentence,
            "baseline": baseline,
        }
    session_cookie(stack.client, stack.headers["Authorization"].split()[1])
    page = stack.client.get(f"/audits/{audit_id}").text
    assert f'<li data-comparison="fail">{escape(sentence)}</li>' in page
    assert "mlflow:models:/support-bot/7" in page and f"/audits/{'b' * 32}" in page
    listed = stack.client.get("/policies").text
    assert "not worse than the baseline (lower is better, margin 0.01" in listed
    assert "<code>champion</code>" in listed
    api = stack.client.get(f"/v1/audits/{audit_id}", headers=stack.headers).json()
    assert api["baseline"] == baseline and api["verdict"]["explanation"] == sentence
