"""The production compose file starts: its memaudit environment passes the production checks."""

from __future__ import annotations

import re

import yaml

from core.config import Settings
from tests.conftest import REPO

VALUES = {
    "POSTGRES_PASSWORD": "k3v9-long-random-password",
    "MEMAUDIT_CALLBACK_SECRET": "x" * 40,
    "MEMAUDIT_PUBLIC_URL": "https://memaudit.example.com",
}


def _substitute(value: str) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} with the values above."""

    def one(match: re.Match) -> str:
        name, default = match.group(1), match.group(3)
        if name in VALUES:
            return VALUES[name]
        assert match.group(2) != ":?", f"compose requires {name}"
        return default or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def test_every_memaudit_service_has_a_valid_production_configuration(tmp_path) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = [s for s in compose["services"].values() if s.get("image") == "memaudit:latest"]
    assert len(services) == 4  # migrate, api, worker, scheduler
    for service in services:
        env = {k: _substitute(str(v)) for k, v in service["environment"].items()}
        assert env["MEMAUDIT_ENVIRONMENT"] == "production"
        fields = {k.removeprefix("MEMAUDIT_").lower(): v for k, v in env.items()}
        settings = Settings(**{**fields, "data_dir": tmp_path})  # raises if production refuses
        assert settings.database_url.startswith("postgresql+psycopg://")


def test_the_image_copies_every_package_the_project_installs() -> None:
    """A package left out of the Dockerfile imports here and fails only in production."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert sorted(packages) == ["app", "core", "worker"]
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
