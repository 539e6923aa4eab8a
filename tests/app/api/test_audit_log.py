"""The audit log through the API: every recorded change appears with its actor, request and
client after the call that made it; only admins read it; a change and its entry are one
transaction; the CLI's changes are the operator's."""

from __future__ import annotations

import argparse
import json

import pytest
from sqlalchemy import func, select, text

from app.cli_admin import cmd_keys_create
from app.keys import create_key
from core.models import ApiKey, AuditLogEntry, AuditPolicy, Team
from core.policies import start_policy_audit
from tests.core.inspection.test_huggingface import SHA, _cache_with
from tests.flows import session_cookie
from worker.checks.registry import REGISTRY


@pytest.fixture
def policy_body(tiny_lm) -> dict:
    return {
        "name": "support-bots",
        "source": "mlflow",
        "model_pattern": "support-*",
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
        "thresholds": [{"metric": "loss.mean_loss", "op": ">=", "value": 0.5}],
    }


def _call(stack, method: str, path: str, expected: int, **kwargs) -> tuple[dict, str]:
    """One change through the API: its body and the request id the service gave it."""
    response = stack.client.request(method, path, headers=stack.headers, **kwargs)
    assert response.status_code == expected, response.text
    return (response.json() if response.content else {}), response.headers["x-request-id"]


def _log(stack, headers: dict[str, str] | None = None, **params) -> dict:
    response = stack.client.get("/v1/audit-log", headers=headers or stack.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _every_change(stack, policy_body: dict, audit_body: dict) -> list[tuple[str, str, str]]:
    """Each recorded action once, through the API: (action, target id, request id), in order."""
    made: list[tuple[str, str, str]] = []
    team, rid = _call(stack, "POST", "/v1/teams", 201, json={"name": "fraud"})
    made.append(("team.created", team["id"], rid))
    _, rid = _call(stack, "PATCH", "/v1/teams/fraud", 200, json={"hf_repos": ["acme/*"]})
    made.append(("team.updated", team["id"], rid))
    key, rid = _call(stack, "POST", "/v1/keys", 201, json={"name": "ci", "scope": "read"})
    made.append(("key.created", key["id"], rid))
    _, rid = _call(stack, "PATCH", f"/v1/keys/{key['id']}", 200, json={"team": "fraud"})
    made.append(("key.assigned", key["id"], rid))
    _, rid = _call(stack, "DELETE", f"/v1/keys/{key['id']}", 200)
    made.append(("key.revoked", key["id"], rid))
    policy, rid = _call(stack, "POST", "/v1/policies", 201, json=policy_body)
    made.append(("policy.created", policy["id"], rid))
    change = {"enabled": False, "model_pattern": "bots-*"}
    _, rid = _call(stack, "PATCH", f"/v1/policies/{policy['id']}", 200, json=change)
    made.append(("policy.updated", policy["id"], rid))
    _, rid = _call(stack, "DELETE", f"/v1/policies/{policy['id']}", 204)
    made.append(("policy.deleted", policy["id"], rid))
    audit, rid = _call(stack, "POST", "/v1/audits", 202, json=audit_body)
    made.append(("audit.created", audit["id"], rid))
    _, rid = _call(stack, "POST", f"/v1/audits/{audit['id']}/cancel", 200)
    made.append(("audit.cancelled", audit["id"], rid))
    return made


def _recorded_with_actor(stack, policy_body: dict, audit_body: dict) -> None:
    made = _every_change(stack, policy_body, audit_body)
    with stack.db.session() as session:
        admin = session.scalar(select(ApiKey).where(ApiKey.name == "test-admin"))
        hashes = list(session.scalars(select(ApiKey.key_hash)))
    everything = _log(stack, limit=500)
    # Before them: the fixture's admin key, made on the database directly (no actor bound).
    assert everything["count"] == len(made) + 1
    assert everything["data"][-1]["actor"]["kind"] == "system"
    log = _log(stack, actor=admin.id, limit=500)
    assert log["count"] == len(made)
    entries = log["data"]
    # Newest first, one per change, each naming what it changed and which request did it.
    assert [(e["action"], e["target_id"], e["request_id"]) for e in entries] == made[::-1]
    for entry in entries:
        assert entry["actor"] == {
            "id": admin.id,
            "name": "test-admin",
            "kind": "key",
            "team_id": "default",
        }
        assert entry["client"] == "testclient"
    by_action = {entry["action"]: entry for entry in entries}
    assert by_action["team.updated"]["detail"]["changed"] == {
        "hf_repos": {"from": [], "to": ["acme/*"]}
    }
    assert by_action["key.assigned"]["detail"]["changed"]["team"]["from"] == "default"
    assert by_action["policy.updated"]["detail"]["changed"] == {
        "enabled": {"from": True, "to": False},
        "model_pattern": {"from": "support-*", "to": "bots-*"},
    }
    assert by_action["key.created"]["detail"] == {"name": "ci", "scope": "read", "team": "default"}
    assert by_action["audit.created"]["detail"]["checks"] == ["loss"]
    assert by_action["audit.cancelled"]["detail"] == {"was": "queued"}
    written = json.dumps(everything)
    assert not any(h in written for h in hashes)  # never a key's hash

    # Each filter narrows.
    policy_id = by_action["policy.created"]["target_id"]
    assert _log(stack, actor="test-admin")["count"] == len(made)
    assert _log(stack, actor="someone")["count"] == 0
    assert [e["action"] for e in _log(stack, action="policy.updated")["data"]] == ["policy.updated"]
    assert _log(stack, target="policy")["count"] == 3
    assert _log(stack, target=f"policy:{policy_id}")["count"] == 3
    assert _log(stack, target="policy:nope")["count"] == 0
    assert _log(stack, target="key", actor=admin.id)["count"] == 3
    first = entries[-1]["created_at"]
    assert _log(stack, since=first, actor=admin.id)["count"] == len(made)
    assert _log(stack, until=first, actor=admin.id)["count"] == 0
    assert _log(stack, since="2999-01-01T00:00:00Z")["count"] == 0
    assert _log(stack, until="2999-01-01T02:00:00+02:00")["count"] == len(made) + 1
    bad = stack.client.get(
        "/v1/audit-log",
        headers=stack.headers,
        params={"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_filter"
    page = _log(stack, limit=2, offset=1)
    assert [e["id"] for e in page["data"]] == [e["id"] for e in entries[1:3]]


def test_each_change_is_recorded_with_its_actor(make_stack, policy_body, body) -> None:
    _recorded_with_actor(make_stack(), policy_body, body)


@pytest.mark.postgres
def test_each_change_is_recorded_with_its_actor_on_postgres(
    make_stack, postgres_url, policy_body, body
) -> None:
    _recorded_with_actor(make_stack(database_url=postgres_url), policy_body, body)


def test_only_admins_read_it_and_a_submit_key_acts_as_itself(make_stack, body) -> None:
    stack = make_stack()
    with stack.db.session() as session:
        reader = create_key(session, "reader", "read")
        submitter = create_key(session, "ci", "submit")
    for key in (reader, submitter):
        response = stack.client.get("/v1/audit-log", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    assert stack.client.get("/v1/audit-log").status_code == 401

    ci = {"Authorization": f"Bearer {submitter}"}
    response = stack.client.post("/v1/audits", headers=ci, json=body)
    assert response.status_code == 202, response.text
    (entry,) = _log(stack, action="audit.created")["data"]
    assert entry["actor"]["name"] == "ci" and entry["actor"]["kind"] == "key"
    assert entry["target_id"] == response.json()["id"]

    # The page: an admin's session lists the entry; a reader's is refused.
    stack.client.cookies.clear()
    stack.client.cookies.update(session_cookie(stack.client, reader))
    refused = stack.client.get("/admin/audit-log")
    assert refused.status_code == 403 and "Audit log</a>" not in refused.text
    stack.client.cookies.clear()
    with stack.db.session() as session:
        admin = create_key(session, "page-admin", "admin")
    stack.client.cookies.update(session_cookie(stack.client, admin))
    page = stack.client.get("/admin/audit-log?action=audit.created")
    assert page.status_code == 200
    assert f'data-entry="{entry["id"]}"' in page.text and 'href="/admin/audit-log"' in page.text


def test_a_change_and_its_entry_are_one_transaction(make_stack, policy_body) -> None:
    stack = make_stack()
    # A refused change writes no entry.
    bad = {**policy_body, "thresholds": [{"metric": "loss.bogus", "op": "<=", "value": 1}]}
    before = _log(stack)["count"]
    _call(stack, "POST", "/v1/policies", 422, json=bad)
    assert _log(stack)["count"] == before
    # An entry that cannot be written takes its change with it.
    with stack.db.engine.begin() as connection:
        connection.execute(
            text(
                "CREATE TRIGGER log_down BEFORE INSERT ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'the log is down'); END"
            )
        )
    response = stack.client.post("/v1/teams", headers=stack.headers, json={"name": "unlogged"})
    assert response.status_code == 500
    assert "log is down" not in response.text  # an internal error says nothing of its cause
    with stack.db.session() as session:
        assert session.scalar(select(Team).where(Team.name == "unlogged")) is None
        assert session.scalar(select(func.count()).select_from(AuditLogEntry)) == before


def test_the_cli_creating_a_key_is_recorded_as_the_operator(make_stack, capsys) -> None:
    stack = make_stack()
    args = argparse.Namespace(name="deploy", scope="submit", team=None)
    assert cmd_keys_create(stack.settings, args) == 0
    secret = capsys.readouterr().out.strip()
    entries = _log(stack, action="key.created")["data"]
    assert [e["actor"]["kind"] for e in entries] == ["cli", "system"]  # system: the fixture's
    entry = entries[0]
    assert entry["actor"]["id"] is None and entry["actor"]["name"]
    assert entry["detail"] == {"name": "deploy", "scope": "submit", "team": "default"}
    assert entry["request_id"] is None and entry["client"] is None
    assert secret not in json.dumps(entry)


def test_a_policy_acts_for_a_registry_event_and_an_admin_for_a_reaudit(
    make_stack, tiny_lm, tmp_path
) -> None:
    cache = tmp_path / "hub"
    _cache_with(tiny_lm.model_dir, cache, "acme/support-lm")
    stack = make_stack(hf_cache_dir=str(cache))
    body = {
        "name": "acme-hub",
        "source": "huggingface",
        "model_pattern": "acme/*",
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
    }
    policy, _ = _call(stack, "POST", "/v1/policies", 201, json=body)
    uri = f"hf:acme/support-lm@{SHA}"
    reaudit, _ = _call(
        stack, "POST", f"/v1/policies/{policy['id']}/reaudit", 201, json={"model_uri": uri}
    )
    # What the worker does for a registry delivery: no key, so the policy is the actor.
    with stack.db.session() as session:
        found = session.get(AuditPolicy, policy["id"])
        app_state = stack.client.app.state
        event, created = start_policy_audit(
            session, stack.settings, app_state.celery, REGISTRY, found, uri, {}
        )
        assert created
    by_audit = {e["target_id"]: e for e in _log(stack, action="audit.created")["data"]}
    assert by_audit[reaudit["id"]]["actor"]["name"] == "test-admin"
    assert by_audit[event.id]["actor"] == {
        "id": policy["id"],
        "name": "acme-hub",
        "kind": "policy",
        "team_id": "default",
    }
    assert by_audit[event.id]["detail"]["policy_id"] == policy["id"]
