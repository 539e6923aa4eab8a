"""A migrated database and the OIDC settings a test signs people in with (no model needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
