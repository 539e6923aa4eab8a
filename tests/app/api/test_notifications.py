"""Notification channels through the API: validated when made, the webhook URL masked in every
answer, and each team's channels and delivery log out of every other team's reach."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from app.keys import create_key
from app.main import create_app
from app.migrate import upgrade
from app.teams import create_team
from core.config import Settings
from core.db import Database
from core.models import Audit, NotificationChannel, NotificationDelivery
from tests.conftest import make_settings

SECRET_PATH = "/services/T0SECRET/B0SECRET/Zq8uYv3mXk2Lp9Wd"
HOOK = f"http://127.0.0.1:9{SECRET_PATH}"


@dataclass
class Service:
    client: TestClient
    db: Database
    settings: Settings
    admin: dict[str, str]

    def key(self, scope: str, team_id: str = "default") -> dict[str, str]:
        with self.db.session() as session:
            return {"Authorization": f"Bearer {create_key(session, scope, scope, team_id)}"}


@pytest.fixture
def make_service(tmp_path) -> Iterator:
    made: list[Service] = []

    def build(**overrides) -> Service:
        settings = make_settings(
            tmp_path / "data", tmp_path / "models", tmp_path / "datasets", **overrides
        )
        settings.ensure_dirs()
        upgrade(settings.database_url)
        db = Database(settings.database_url)
        with db.session() as session:
            admin = create_key(session, "admin", "admin")
        service = Service(
            TestClient(create_app(settings)), db, settings, {"Authorization": f"Bearer {admin}"}
        )
        made.append(service)
        return service

    yield build
    for service in made:
        service.client.app.state.db.dispose()
        service.client.close()
        service.db.dispose()


def _webhook(url: str = HOOK, **extra) -> dict:
    return {"name": "releases", "kind": "webhook", "url": url, **extra}


def test_the_webhook_url_is_masked_in_every_answer(make_service) -> None:
    service = make_service(callback_allow_private=True)
    made = service.client.post("/v1/notifications/channels", headers=service.admin, json=_webhook())
    assert made.status_code == 201, made.text
    channel = made.json()
    assert channel["url"] == "http://127.0.0.1:9/…p9Wd"
    assert channel["events"] == ["policy.outcome", "audit.failed"]
    answers = [
        made,
        service.client.get("/v1/notifications/channels", headers=service.admin),
        service.client.get(f"/v1/notifications/channels/{channel['id']}", headers=service.admin),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201)
        assert "SECRET" not in answer.text and "Zq8uYv3mXk2L" not in answer.text
    with service.db.session() as session:  # kept in full, to send
        assert session.get(NotificationChannel, channel["id"]).webhook_url == HOOK
    deleted = service.client.delete(
        f"/v1/notifications/channels/{channel['id']}", headers=service.admin
    )
    assert deleted.status_code == 204, deleted.text
    # The audit log has the channel's making and deleting, and never its URL.
    log = service.client.get(
        "/v1/audit-log", headers=service.admin, params={"target": f"channel:{channel['id']}"}
    )
    assert [entry["action"] for entry in log.json()["data"]] == [
        "channel.deleted",
        "channel.created",
    ]
    assert "SECRET" not in log.text and "p9Wd" not in log.text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook/xyz",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:10.0.0.1]/hook",
        f"http://{'a' * 100}.example/hook",  # a label IDNA cannot encode
    ],
)
def test_a_private_or_odd_webhook_address_is_refused_without_the_opt_in(
    make_service, url: str
) -> None:
    service = make_service()
    refused = service.client.post(
        "/v1/notifications/channels", headers=service.admin, json=_webhook(url)
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "webhook_url_not_allowed"
    listed = service.client.get("/v1/notifications/channels", headers=service.admin).json()
    assert listed["count"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "m", "kind": "email", "recipients": ["not an address"]},
        {"name": "m", "kind": "email", "recipients": ["ops@example.org\r\nBcc: x@evil.test"]},
        {"name": "m", "kind": "email", "recipients": ["Ops <ops@example.org>"]},
        {"name": "m", "kind": "email", "recipients": []},
        {"name": "m", "kind": "email", "recipients": ["ops@example.org"], "url": HOOK},
        {"name": "m", "kind": "webhook"},
        {"name": "m", "kind": "webhook", "url": HOOK, "recipients": ["ops@example.org"]},
        {"name": "m", "kind": "webhook", "url": HOOK, "events": ["audit.succeeded"]},
        {"name": "m", "kind": "webhook", "url": HOOK, "events": []},
        {"name": "m", "kind": "webhook", "url": "http://127.0.0.1:99999/hook"},
        {"name": "m", "kind": "webhook", "url": "http://[::1/hook"},
        {"name": "m", "kind": "webhook", "url": "ftp://hooks.example.com/x"},
    ],
)
def test_channels_that_cannot_work_are_refused(make_service, body: dict) -> None:
    service = make_service(
        callback_allow_private=True, smtp_host="127.0.0.1", smtp_from="memaudit@example.org"
    )
    refused = service.client.post("/v1/notifications/channels", headers=service.admin, json=body)
    assert refused.status_code == 422, refused.text


def test_email_channels_need_the_relay_and_then_work(make_service) -> None:
    body = {"name": "ops", "kind": "email", "recipients": ["ops@example.org", "a.b+c@d-e.io"]}
    bare = make_service()
    refused = bare.client.post("/v1/notifications/channels", headers=bare.admin, json=body)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "email_not_configured"
    service = make_service(smtp_host="127.0.0.1", smtp_from="memaudit@example.org")
    made = service.client.post("/v1/notifications/channels", headers=service.admin, json=body)
    assert made.status_code == 201, made.text
    assert made.json()["recipients"] == body["recipients"] and made.json()["url"] is None
    again = service.client.post("/v1/notifications/channels", headers=service.admin, json=body)
    assert again.status_code == 409


def test_email_recipients_must_be_in_the_allowed_domains(make_service) -> None:
    """Any submit key may make a channel: the operator's relay mails only the operator's
    domains (and their subdomains), never an address a key picks."""
    service = make_service(
        smtp_host="127.0.0.1",
        smtp_from="memaudit@example.org",
        smtp_allowed_domains="example.org,corp.example",
    )
    submit = service.key("submit")
    for outside in ["victim@elsewhere.net", "a@example.org.evil.net", "b@notexample.org"]:
        body = {"name": "x", "kind": "email", "recipients": ["ops@example.org", outside]}
        refused = service.client.post("/v1/notifications/channels", headers=submit, json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "recipient_not_allowed"
        assert outside in refused.json()["error"]["message"]
        assert "ops@example.org" not in refused.json()["error"]["message"]
    inside = ["ops@example.org", "rel@EU.Corp.Example", "x@mail.example.org"]
    body = {"name": "ok", "kind": "email", "recipients": inside}
    made = service.client.post("/v1/notifications/channels", headers=submit, json=body)
    assert made.status_code == 201, made.text


def _audit(session, team_id: str) -> str:
    audit = Audit(
        team_id=team_id,
        status="failed",
        dataset_uri="dataset:ds_x",
        dataset_sha256="0" * 64,
        n_samples=1,
        checks=[],
    )
    session.add(audit)
    session.flush()
    return audit.id


def test_a_teams_channels_are_its_own(make_service) -> None:
    service = make_service(callback_allow_private=True)
    with service.db.session() as session:
        teams = {name: create_team(session, service.settings, name).id for name in ("a", "b")}
    a_submit, b_submit = service.key("submit", teams["a"]), service.key("submit", teams["b"])
    a_read = service.key("read", teams["a"])
    client = service.client
    path = "/v1/notifications/channels"

    made = client.post(path, headers=a_submit, json=_webhook())
    assert made.status_code == 201, made.text
    channel = made.json()
    assert channel["team_id"] == teams["a"]
    # A read key reads its team's channels and changes none.
    assert client.get(path, headers=a_read).json()["count"] == 1
    assert client.post(path, headers=a_read, json=_webhook(name="x")).status_code == 403
    assert client.delete(f"{path}/{channel['id']}", headers=a_read).status_code == 403
    # Team b sees nothing of team a's, and a's channel answers b as a missing one.
    assert client.get(path, headers=b_submit).json() == {"data": [], "count": 0}
    assert client.get(f"{path}/{channel['id']}", headers=b_submit).status_code == 404
    assert client.delete(f"{path}/{channel['id']}", headers=b_submit).status_code == 404
    crossed = client.post(path, headers=b_submit, json=_webhook(name="x", team="a"))
    assert crossed.status_code == 403
    # Team b may name itself; an admin key may make a channel for any team, and sees all.
    own = client.post(path, headers=b_submit, json=_webhook(name="own", team="b"))
    assert own.status_code == 201, own.text
    for_a = client.post(path, headers=service.admin, json=_webhook(name="by-admin", team="a"))
    assert for_a.status_code == 201 and for_a.json()["team_id"] == teams["a"]
    assert client.get(path, headers=service.admin).json()["count"] == 3

    with service.db.session() as session:  # one attempt logged per team's channel
        for team, channel_id in ((teams["a"], channel["id"]), (teams["b"], own.json()["id"])):
            session.add(
                NotificationDelivery(
                    channel_id=channel_id,
                    audit_id=_audit(session, team),
                    event="audit.failed",
                    outcome="failed",
                    attempt=1,
                    status_code=503,
                    error="down",
                    duration_ms=3,
                    delivered=False,
                )
            )
    deliveries = "/v1/notifications/deliveries"
    seen_by_a = client.get(deliveries, headers=a_read).json()
    assert [d["channel_id"] for d in seen_by_a["data"]] == [channel["id"]]
    assert seen_by_a["data"][0]["status_code"] == 503
    assert client.get(deliveries, headers=b_submit).json()["count"] == 1
    filtered = client.get(deliveries, headers=b_submit, params={"channel_id": channel["id"]})
    assert filtered.json()["count"] == 0
    assert client.get(deliveries, headers=service.admin).json()["count"] == 2

    deleted = client.delete(f"{path}/{channel['id']}", headers=a_submit)
    assert deleted.status_code == 204
    assert client.get(deliveries, headers=a_read).json()["count"] == 0  # its log went with it
    assert client.get(path, headers=a_read).json()["count"] == 1  # the admin's channel stays
