"""Audit policies: admin CRUD, validation up front (the checks against the dataset's records
too), and the verdict finalize records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from markupsafe import escape

from app.keys import create_key
from bench.report_data import seed_audit
from core.models import Audit, AuditPolicy
from tests.app.api.test_evidence import run_audit
from tests.conftest import write_jsonl
from tests.flows import session_cookie
from worker.finalize import finalize_audit
from worker.registry_verdicts import version_tags


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
        "checks": [
            {"kind": "extraction", "params": {"suffix_tokens": 16, "prefix_tokens": 10}},
            {"kind": "membership", "params": {"bootstrap": 50}},
        ],
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
    assert policy["warnings"] == []  # every canary holds 10+16 tokens, even at a token a byte
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
        (  # the verdict could never read it: refused, not left to end every audit `unknown`
            {"thresholds": [{"metric": "loss.mean_loss", "op": "<=", "value": 1}]},
            422,
            "threshold_without_check",
        ),
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
        "reason": None,
    }
    assert verdict["results"][1]["reading"] == "inconclusive"
    assert verdict["results"][1]["passed"] is None and verdict["promotion"] == "blocked"
    assert 0.01 < rate < 0.99
    session_cookie(stack.client, stack.headers["Authorization"].split()[1])
    page = stack.client.get(f"/audits/{audit_id}").text
    assert f'data-verdict="{expected}"' in page and "extraction.greedy_extraction_rate" in page


# ---- policies that fit their data --------------------------------------------------------


def _texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]


def test_windows_no_record_can_hold_are_refused_before_any_audit(stack, body, tiny_lm) -> None:
    """The README's first policy: 50+50 tokens of extraction on the demo canaries, each under
    80 bytes. No tokenizer makes 100 tokens of them: a 422 that says what to change."""
    longest = max(len(text.encode()) for text in _texts(tiny_lm.dataset_path))
    body["checks"][0]["params"] = {}  # the defaults: prefix_tokens 50, suffix_tokens 50
    response = stack.client.post("/v1/policies", headers=stack.headers, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "dataset_does_not_fit"
    assert error["message"] == (
        "check 'extraction' cannot run on this dataset: prefix_tokens+suffix_tokens = 100 "
        "tokens are needed of each record, but all 48 records are shorter than that even at "
        f"one token per byte (the longest has {longest} bytes, so at most {longest + 1} "
        f"tokens): lower prefix_tokens+suffix_tokens to at most {longest + 1}, or use a "
        "dataset of longer records"
    )
    with stack.db.session() as session:
        assert session.query(AuditPolicy).count() == 0
        assert session.query(Audit).count() == 0
    # Changing a policy that fits into one that does not is refused the same way, and leaves
    # it as it was.
    fitting = stack.client.post(
        "/v1/policies",
        headers=stack.headers,
        json={
            **body,
            "checks": [
                {"kind": "extraction", "params": {"prefix_tokens": 30, "suffix_tokens": 30}},
                {"kind": "membership", "params": {}},
            ],
        },
    ).json()
    patched = stack.client.patch(
        f"/v1/policies/{fitting['id']}",
        headers=stack.headers,
        json={
            "checks": [
                {"kind": "extraction", "params": {"prefix_tokens": 60}},
                {"kind": "membership", "params": {}},
            ]
        },
    )
    assert patched.status_code == 422 and "prefix_tokens+suffix_tokens = 110" in patched.text
    again = stack.client.get(f"/v1/policies/{fitting['id']}", headers=stack.headers).json()
    assert again == fitting


def test_some_records_too_short_are_a_warning_on_the_policy(stack, body, tiny_lm) -> None:
    """Three records under 10+16 tokens even at a token a byte: the policy is accepted, and
    says so in its response and on every read."""
    dataset = write_jsonl(
        tiny_lm.dataset_path.parent / "mixed.jsonl",
        [{"text": "short one"}, {"text": "hi"}, {"text": "x" * 24}]
        + [{"text": text} for text in _texts(tiny_lm.dataset_path)],
    )
    body["dataset"] = {"uri": f"path:{dataset}"}
    body["thresholds"] = body["thresholds"][:1]  # the membership AUC needs labels (below)
    created = stack.client.post("/v1/policies", headers=stack.headers, json=body)
    assert created.status_code == 201, created.text
    policy = created.json()
    assert policy["warnings"] == [
        {
            "source": "dataset",
            "check": "extraction",
            "message": "3 of 51 records are shorter than prefix_tokens+suffix_tokens = 26 "
            "tokens even at one token per byte and will be skipped; how many more are, only "
            "the model's tokenizer tells (the policy's first audit says)",
            "model": None,
            "model_uri": None,
            "audit_id": None,
        }
    ]
    listed = stack.client.get("/v1/policies", headers=stack.headers).json()["data"]
    assert listed[0]["warnings"] == policy["warnings"]
    # Windows every record holds clear the warning.
    patched = stack.client.patch(
        f"/v1/policies/{policy['id']}",
        headers=stack.headers,
        json={
            "checks": [{"kind": "extraction", "params": {"prefix_tokens": 1, "suffix_tokens": 1}}]
        },
    )
    assert patched.status_code == 200 and patched.json()["warnings"] == []


@pytest.mark.parametrize(
    ("records", "thresholds", "expected"),
    [
        (  # a worker fails the audit on the first record without a text
            [{"text": "a canary long enough " * 3}, {"id": "no-text"}],
            [],
            "it reads field 'text' of every record, but 1 of 2 records have none (the first "
            "on line 2): add it to those records, or leave them out",
        ),
        (  # and on a label it cannot read
            [{"text": "a canary long enough " * 3, "member": "yes"}],
            [],
            "a worker cannot read 1 of 1 records (line 1: field 'member' must be true, false "
            "or absent): mend those records, or leave them out",
        ),
        (  # an AUC sets members against non-members: there are none
            [{"text": "a canary long enough " * 3, "member": True}] * 3,
            [{"metric": "membership.loss.auc", "op": "<=", "value": 0.6}],
            "threshold membership.loss.auc needs records labelled `member: true` and `member: "
            "false`, but the dataset's 3 records hold 3 labelled true, 0 false and 0 "
            "unlabelled: add records labelled `member: false`, or drop the threshold",
        ),
    ],
)
def test_records_a_check_cannot_read_are_refused(
    stack, body, tiny_lm, records, thresholds, expected
) -> None:
    dataset = write_jsonl(tiny_lm.dataset_path.parent / "odd.jsonl", records)
    body.update(dataset={"uri": f"path:{dataset}"}, thresholds=thresholds)
    body["checks"] = [{"kind": "membership", "params": {}}]
    response = stack.client.post("/v1/policies", headers=stack.headers, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "dataset_does_not_fit"
    assert expected in response.json()["error"]["message"]


def test_records_short_in_the_models_tokens_warn_and_explain_the_unknown_verdict(
    stack, body, tiny_lm
) -> None:
    """30+30 tokens fit every canary at a token a byte (74-78 bytes), but the demo model's
    tokenizer makes 29-38 tokens of each: the audit skips them all. Its verdict says why, in
    the report and in the MLflow tag, and the policy carries the warning."""
    body["checks"] = [{"kind": "extraction", "params": {"prefix_tokens": 30, "suffix_tokens": 30}}]
    body["thresholds"] = body["thresholds"][:1]
    policy = stack.client.post("/v1/policies", headers=stack.headers, json=body).json()
    assert policy["warnings"] == []
    submitted = stack.client.post(
        "/v1/audits",
        headers=stack.headers,
        json={
            "model": {"uri": f"path:{tiny_lm.model_dir}"},
            "dataset": body["dataset"],
            "checks": policy["checks"],
        },
    )
    assert submitted.status_code == 202, submitted.text
    audit_id = submitted.json()["id"]
    with stack.db.session() as session:
        session.get(Audit, audit_id).policy_id = policy["id"]
    audit = run_audit(stack, audit_id)

    summary = audit["summary"]["extraction"]
    assert summary["n_skipped"] == 48
    longest = summary["not_computed"].rpartition(" ")[2].rstrip(")")
    assert 29 <= int(longest) < 60
    reason = (
        "48 of 48 records shorter than prefix+suffix "
        f"(60 tokens; the longest of them has {longest})"
    )
    assert summary["not_computed"] == reason
    verdict = audit["verdict"]
    assert verdict["status"] == "unknown" and verdict["promotion"] == "blocked"
    assert verdict["reason"] == f"unknown: {reason}"
    assert verdict["results"][0]["reason"] == reason

    with stack.db.session() as session:
        tags = version_tags(session.get(Audit, audit_id), stack.settings)
    assert tags["memaudit.verdict"] == "unknown"
    assert tags["memaudit.verdict_reason"] == f"unknown: {reason}"

    warnings = stack.client.get(f"/v1/policies/{policy['id']}", headers=stack.headers).json()[
        "warnings"
    ]
    assert warnings == [
        {
            "source": "audit",
            "check": "extraction",
            "message": summary["unfit"],
            "model": audit["model_family"],
            "model_uri": f"path:{tiny_lm.model_dir}",
            "audit_id": audit_id,
        }
    ]
    assert summary["unfit"].startswith(
        "48 of 48 records shorter than prefix+suffix in this model's"
    )

    session_cookie(stack.client, stack.headers["Authorization"].split()[1])
    page = stack.client.get(f"/audits/{audit_id}").text
    assert 'data-verdict="unknown"' in page and f"unknown: {reason}" in page
    assert str(escape(summary["unfit"])) in page  # the extraction section's note
