"""Start-up refusals, through the real `memaudit serve` and `memaudit worker` commands."""

from __future__ import annotations

import subprocess
import sys

from app.keys import create_key
from app.migrate import upgrade
from core.db import Database
from core.deployment import record_worker_host
from tests.conftest import REPO, make_settings, settings_env


def _run(settings, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *argv],
        env=settings_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _settings(tmp_path):
    settings = make_settings(tmp_path / "data", tmp_path / "models", tmp_path / "inputs")
    settings.ensure_dirs()
    upgrade(settings.database_url)
    return settings


def test_serve_on_a_public_address_needs_a_key_made_on_purpose(tmp_path) -> None:
    settings = _settings(tmp_path)
    result = _run(settings, "serve", "--host", "0.0.0.0", "--port", "1", "--no-worker")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refusing to listen on 0.0.0.0 with no API key" in result.stderr
    assert not settings.admin_key_path.exists()  # no key was generated on the fly


def test_a_second_host_cannot_share_a_sqlite_database(tmp_path) -> None:
    settings = _settings(tmp_path)
    db = Database(settings.database_url)
    with db.session() as session:
        record_worker_host(session, "gpu-node-7")  # a worker elsewhere claimed work just now
        create_key(session, "ops", "admin")
    db.dispose()
    result = _run(settings, "worker")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "already serves workers on gpu-node-7" in result.stderr
    assert "PostgreSQL and Redis" in result.stderr
