"""A migrated database and the OIDC settings a test signs people in with (no model needed);
a real identity provider (oidc-provider-mock) on loopback and the service in process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import werkzeug.serving
from fastapi.testclient import TestClient
from oidc_provider_mock import User
from oidc_provider_mock import app as provider_app

from app.main import create_app
from app.migrate import upgrade
from core.config import Settings
from core.db import Database
from core.models import Team

ISSUER = "https://id.example.org"


def oidc_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "oidc_issuer": ISSUER,
        "oidc_client_id": "memaudit",
        "oidc_role_scopes": "viewer=read,auditor=submit",
        "oidc_team_prefix": "memaudit-",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database with the default team and teams `vision` and `speech`."""
    settings = oidc_settings(tmp_path / "data")
    settings.ensure_dirs()
    upgrade(settings.database_url)
    database = Database(settings.database_url)
    with database.session() as session:
        for name in ("vision", "speech"):
            session.add(Team(id=name, name=name))
        session.commit()
    yield database
    database.dispose()


@dataclass
class Provider:
    """oidc-provider-mock on loopback, and the paths it was asked for, in order."""

    issuer: str
    requests: list[str]


PEOPLE = [
    User(
        sub="alice",
        claims={
            "email": "alice@example.org",
            "email_verified": True,
            "roles": ["auditor"],
            "groups": ["memaudit-vision"],
        },
    )
]


@pytest.fixture
def provider() -> Iterator[Provider]:
    requests: list[str] = []
    inner = provider_app(require_nonce=True, user_claims=PEOPLE)

    def counted(environ: dict, start_response: Callable) -> object:
        requests.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    server = werkzeug.serving.make_server("127.0.0.1", 0, counted, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Provider(f"http://127.0.0.1:{server.server_port}", requests)
    finally:
        server.shutdown()
        thread.join(5)


@dataclass
class Dashboard:
    client: TestClient
    settings: Settings


@pytest.fixture
def dashboard(tmp_path: Path, provider: Provider) -> Iterator[Callable[..., Dashboard]]:
    """The service, in process, signing people in through `provider`."""
    clients: list[TestClient] = []

    def build(**overrides: object) -> Dashboard:
        settings = oidc_settings(
            tmp_path / "app",
            oidc_issuer=provider.issuer,
            oidc_client_secret="a-client-secret-for-this-test",  # the mock wants one
            oidc_allow_private=True,
            **overrides,
        )
        settings.ensure_dirs()
        upgrade(settings.database_url)
        database = Database(settings.database_url)
        with database.session() as session:
            session.add(Team(id="vision", name="vision"))
            session.commit()
        database.dispose()
        clients.append(TestClient(create_app(settings)))
        return Dashboard(clients[-1], settings)

    yield build
    for client in clients:
        client.app.state.db.dispose()
        client.close()


def start_sign_in(client: TestClient, sub: str = "alice") -> str:
    """Start a sign-in and pass the provider's page as `sub`: the callback's path and query."""
    started = client.get("/login/oidc", params={"next": "/audits"}, follow_redirects=False)
    assert started.status_code == 303, started.text
    signed = httpx.post(started.headers["location"], data={"sub": sub})
    assert signed.status_code == 302, signed.text
    callback = urlsplit(signed.headers["location"])
    return f"{callback.path}?{callback.query}"
