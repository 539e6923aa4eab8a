"""Two teams, each with its own keys, models and data: neither reaches the other's."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.keys import create_key
from app.teams import assign_key, create_team, update_team
from core.models import ApiKey as _ApiKey
from core.models import Team as _Team
from tests.flows import scrape, session_cookie, upload
from worker.runner import run_shard


@dataclass
class Team:
    name: str
    headers: dict[str, str]
    model: Path
    dataset: Path


@pytest.fixture
def teams(make_stack, tiny_lm, tmp_path):
    """Teams a and b, each granted its own model and data folder under the shared roots."""
    models, data = tmp_path / "models", tmp_path / "data"
    stack = make_stack(model_roots=str(models), data_roots=str(data))
    found = {}
    for name in ("a", "b"):
        shutil.copytree(tiny_lm.model_dir, models / f"team-{name}" / "lm")
        dataset = data / f"team-{name}" / "canaries.jsonl"
        dataset.parent.mkdir(parents=True)
        shutil.copy(tiny_lm.dataset_path, dataset)
        with stack.db.session() as session:
            team = create_team(
                session,
                stack.settings,
                f"team-{name}",
                model_folders=[str(models / f"team-{name}")],
                data_folders=[str(data / f"team-{name}")],
                mlflow_models=[f"{name}-*"],
                hf_repos=[f"org-{name}/*"],
            )
            key = create_key(session, f"{name}-submit", "submit", team.id)
        found[name] = Team(
            f"team-{name}",
            {"Authorization": f"Bearer {key}"},
            models / f"team-{name}" / "lm",
            dataset,
        )
    return stack, found["a"], found["b"]


def _body(model: str, dataset: str, **extra) -> dict:
    return {
        "model": {"uri": model},
        "dataset": {"uri": dataset},
        "checks": [{"kind": "loss", "params": {}}],
        **extra,
    }


def _submit(stack, team: Team, model: str, dataset: str, **extra):
    return stack.client.post(
        "/v1/audits", headers=team.headers, json=_body(model, dataset, **extra)
    )


def test_a_key_audits_only_what_its_team_is_granted(teams) -> None:
    stack, a, b = teams
    own = _submit(stack, a, f"path:{a.model}", f"path:{a.dataset}")
    assert own.status_code == 202, own.text
    answers = set()
    for model, dataset in [
        (f"path:{b.model}", f"path:{a.dataset}"),  # b's model, which exists
        (f"path:{b.model.parent / 'missing'}", f"path:{a.dataset}"),  # nothing there
    ]:
        refused = _submit(stack, a, model, dataset)
        assert refused.status_code == 422
        answers.add(refused.text.replace(model.removeprefix("path:"), "<path>"))
    assert len(answers) == 1, answers  # the same refusal: nobody learns what b has
    data = _submit(stack, a, f"path:{a.model}", f"path:{b.dataset}")
    assert data.status_code == 422 and "outside the folders you may read" in data.text
    for registry in ["mlflow:models:/b-support/3", "hf:org-b/lm@main"]:
        refused = _submit(stack, a, registry, f"path:{a.dataset}")
        assert refused.status_code == 422 and "is not granted to this team" in refused.text
    # A link in a's folder to b's model leads out of a's folder: refused like any escape.
    os.symlink(b.model, a.model.parent / "borrowed")
    linked = _submit(stack, a, f"path:{a.model.parent / 'borrowed'}", f"path:{a.dataset}")
    assert linked.status_code == 422 and "leads outside" in linked.text


def test_audits_are_read_and_acted_on_by_their_team_only(teams) -> None:
    stack, a, b = teams
    audit = _submit(stack, a, f"path:{a.model}", f"path:{a.dataset}").json()
    for method, path in [
        ("GET", f"/v1/audits/{audit['id']}"),
        ("GET", f"/v1/audits/{audit['id']}/samples"),
        ("GET", f"/v1/audits/{audit['id']}/samples.csv"),
        ("GET", f"/v1/audits/{audit['id']}/report.html"),
        ("GET", f"/v1/audits/{audit['id']}/callbacks"),
        ("POST", f"/v1/audits/{audit['id']}/cancel"),
    ]:
        theirs = stack.client.request(method, path, headers=b.headers)
        missing = stack.client.request(
            method, path.replace(audit["id"], "f" * 32), headers=b.headers
        )
        assert theirs.status_code == missing.status_code == 404, path
        assert theirs.json()["error"]["code"] == missing.json()["error"]["code"]
    assert stack.client.get("/v1/audits", headers=b.headers).json()["count"] == 0
    assert stack.client.get("/v1/audits", headers=a.headers).json()["count"] == 1
    assert stack.client.get("/v1/audits", headers=stack.headers).json()["count"] == 1  # admin
    cancelled = stack.client.post(f"/v1/audits/{audit['id']}/cancel", headers=a.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # Idempotency keys are per team: the same one names two audits.
    first = _submit(stack, a, f"path:{a.model}", f"path:{a.dataset}", idempotency_key="nightly")
    second = _submit(stack, b, f"path:{b.model}", f"path:{b.dataset}", idempotency_key="nightly")
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] != second.json()["id"]


def test_the_dashboard_shows_a_team_its_own_audits(teams) -> None:
    stack, a, b = teams
    audit = _submit(stack, a, f"path:{a.model}", f"path:{a.dataset}").json()
    stack.client.cookies.clear()
    session_cookie(stack.client, b.headers["Authorization"].split()[1])
    assert audit["id"] not in stack.client.get("/audits").text
    for path in [f"/audits/{audit['id']}", f"/compare?a={audit['id']}&b={audit['id']}"]:
        assert stack.client.get(path).status_code == 404, path
    family = stack.client.get("/models", params={"family": audit["model_family"]})
    assert family.status_code == 404
    stack.client.cookies.clear()
    session_cookie(stack.client, a.headers["Authorization"].split()[1])
    assert stack.client.get(f"/audits/{audit['id']}").status_code == 200


def test_the_same_bytes_from_another_team_are_a_first_upload(teams) -> None:
    stack, a, b = teams
    first_a = stack.client.post(
        "/v1/datasets", headers=a.headers, files={"file": ("a.jsonl", a.dataset.read_bytes())}
    )
    first_b = stack.client.post(
        "/v1/datasets", headers=b.headers, files={"file": ("b.jsonl", a.dataset.read_bytes())}
    )
    assert first_a.status_code == first_b.status_code == 201
    mine, theirs = first_a.json(), first_b.json()
    assert mine.keys() == theirs.keys()
    assert mine["id"] != theirs["id"] and theirs["filename"] == "b.jsonl"
    assert mine["created_by"] != theirs["created_by"] and mine["sha256"] == theirs["sha256"]
    again = stack.client.post(
        "/v1/datasets", headers=a.headers, files={"file": ("a2.jsonl", a.dataset.read_bytes())}
    )
    assert again.status_code == 200 and again.json()["id"] == mine["id"]
    # b cannot name a's record; it answers as a record that never was.
    for dataset_id in (mine["id"], "ds_" + "0" * 24):
        refused = _submit(stack, b, f"path:{b.model}", f"dataset:{dataset_id}")
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "unknown_dataset"
    assert _submit(stack, b, f"path:{b.model}", f"dataset:{theirs['id']}").status_code == 202


def test_the_worker_checks_the_grant_again_at_load(teams) -> None:
    stack, a, _b = teams
    dataset = upload(stack.client, a.headers, a.dataset)
    audit = _submit(stack, a, f"path:{a.model}", dataset["uri"]).json()
    with stack.db.session() as session:
        from core.models import Shard, Team

        team = session.query(Team).filter_by(name="team-a").one()
        update_team(session, stack.settings, team, model_folders=[])  # the grant is withdrawn
        shard_id = session.query(Shard.id).filter_by(audit_id=audit["id"], index=0).scalar()
    outcome = run_shard(stack.db, stack.settings, shard_id)
    assert outcome.status == "failed"
    failed = stack.client.get(f"/v1/audits/{audit['id']}", headers=a.headers).json()
    assert failed["status"] == "failed" and "outside the folders you may read" in failed["error"]


def test_admins_manage_teams_and_keys(teams) -> None:
    stack, a, _b = teams
    created = stack.client.post(
        "/v1/teams",
        headers=stack.headers,
        json={"name": "team-c", "model_folders": ["/etc"], "data_folders": []},
    )
    assert created.status_code == 422 and created.json()["error"]["code"] == "invalid_grant"
    created = stack.client.post(
        "/v1/teams", headers=stack.headers, json={"name": "team-c", "mlflow_models": ["c-*"]}
    )
    assert created.status_code == 201, created.text
    key = stack.client.post(
        "/v1/keys", headers=stack.headers, json={"name": "c", "scope": "submit", "team": "team-c"}
    ).json()
    assert key["team_id"] == created.json()["id"] and key["key"].startswith("ma_")
    assert stack.client.get("/v1/teams", headers=a.headers).status_code == 403
    moved = stack.client.patch(
        f"/v1/keys/{key['id']}", headers=stack.headers, json={"team": "team-a"}
    )
    assert moved.status_code == 200 and moved.json()["team_id"] != key["team_id"]
    headers = {"Authorization": f"Bearer {key['key']}"}
    assert _submit(stack, a, f"path:{a.model}", f"path:{a.dataset}").status_code == 202
    assert stack.client.get("/v1/audits", headers=headers).json()["count"] == 1  # now a's
    revoked = stack.client.delete(f"/v1/keys/{key['id']}", headers=stack.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert stack.client.get("/v1/audits", headers=headers).status_code == 401


def test_a_team_cannot_point_its_folder_at_another_teams(teams) -> None:
    stack, a, b = teams
    shutil.rmtree(a.model.parent)
    a.model.parent.symlink_to(b.model.parent)  # models/team-a -> models/team-b
    refused = _submit(stack, a, f"path:{a.model}", f"path:{a.dataset}")
    assert refused.status_code == 422 and "is a link or not a folder" in refused.text


def test_metrics_show_a_team_its_own_activity(teams) -> None:
    stack, a, _b = teams
    assert _submit(stack, a, f"path:{a.model}", f"path:{a.dataset}").status_code == 202
    with stack.db.session() as session:
        reader = create_key(session, "b-read", "read", session.query(_Team).filter_by(
            name="team-b").one().id)  # fmt: skip
    theirs = scrape(stack.client, {"Authorization": f"Bearer {reader}"})
    assert theirs['memaudit_audits{status="queued"}'] == 0 and theirs["memaudit_queue_depth"] == 0
    assert not any(name.startswith("memaudit_refused_total") for name in theirs)
    admin = scrape(stack.client, stack.headers)
    assert admin['memaudit_audits{status="queued"}'] == 1 and admin["memaudit_queue_depth"] == 3


def test_chat_endpoint_models_are_granted_per_team(make_stack, tiny_lm, tmp_path) -> None:
    stack = make_stack(chat_endpoint_hosts="api.example.com")
    with stack.db.session() as session:
        team = create_team(
            session, stack.settings, "chatty", data_folders=["*"],
            chat_endpoints=["ours-*@https://api.example.com/v1"],
        )  # fmt: skip
        key = create_key(session, "c", "submit", team.id)
    headers = {"Authorization": f"Bearer {key}"}
    body = _body("openai:theirs-ft@https://api.example.com/v1", f"path:{tiny_lm.dataset_path}")
    refused = stack.client.post("/v1/audits", headers=headers, json=body)
    assert refused.status_code == 422 and "is not granted to this team" in refused.text


def test_a_policy_refused_for_its_team_does_not_stop_the_others(teams, tiny_lm, tmp_path) -> None:
    """Team b's policy matches every repository but is not granted a's: a's policy still
    audits a's new revision, and b's refusal is recorded on the delivery."""
    from core.models import WebhookDelivery
    from core.policies import create_policy
    from core.schemas import PolicyCreate
    from tests.core.inspection.test_huggingface import SHA, _cache_with
    from worker.checks.registry import REGISTRY
    from worker.model_registry import handle_delivery

    stack, a, b = teams
    _cache_with(tiny_lm.model_dir, tmp_path / "hub", "org-a/lm")
    stack.settings.hf_cache_dir = str(tmp_path / "hub")
    with stack.db.session() as session:
        admin = session.query(_ApiKey).filter_by(name="test-admin").one()
        # b's policy first: by name order it is tried first, and is refused.
        for team, pattern, dataset in [
            ("team-a", "org-a/*", a.dataset),
            ("team-b", "*", b.dataset),
        ]:
            body = PolicyCreate(
                name=f"{team[-1]}-hub" if team == "team-b" else "z-hub", source="huggingface",
                model_pattern=pattern, dataset={"uri": f"path:{dataset}"},
                checks=[{"kind": "loss"}], team=team,
            )  # fmt: skip
            create_policy(session, stack.settings, REGISTRY, body, admin)
        session.add(WebhookDelivery(
            id="huggingface:1", source="huggingface", event="repo.content.update",
            payload={"event": {"scope": "repo.content", "action": "update"},
                     "repo": {"type": "model", "name": "org-a/lm", "headSha": SHA}},
        ))  # fmt: skip
    celery = stack.client.app.state.celery
    outcome = handle_delivery(stack.db, stack.settings, celery, "huggingface:1")
    assert [entry["policy"] for entry in outcome["refused"]] == ["b-hub"]
    assert "is not granted to this team" in outcome["refused"][0]["error"]
    (started,) = outcome["audits"]
    audit = stack.client.get(f"/v1/audits/{started}", headers=a.headers).json()
    assert audit["model_uri"] == f"hf:org-a/lm@{SHA}" and audit["labels"]["policy"] == "z-hub"


def test_moving_or_revoking_a_key_ends_its_sessions(teams) -> None:
    stack, a, _b = teams
    key = a.headers["Authorization"].split()[1]
    stack.client.cookies.clear()
    session_cookie(stack.client, key)
    assert stack.client.get("/v1/audits").status_code == 200
    with stack.db.session() as session:
        moved = session.query(_ApiKey).filter_by(name="a-submit").one()
        assign_key(session, moved, session.query(_Team).filter_by(name="team-b").one())
    assert stack.client.get("/v1/audits").status_code == 401


def test_a_revoked_admin_keys_queued_audits_fall_back_to_its_team(teams) -> None:
    from core.tenancy import submitter_grants

    stack, _a, _b = teams
    with stack.db.session() as session:
        admin = session.query(_ApiKey).filter_by(name="test-admin").one()
        assert submitter_grants(session, admin.team_id, admin.id).mlflow_models == ("*",)
        admin.revoked_at = admin.created_at
        session.flush()
        team = session.query(_Team).filter_by(name="team-a").one()
        assert submitter_grants(session, team.id, admin.id).mlflow_models == ("a-*",)
