"""The production compose file starts: its memaudit environment passes the production checks."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from core.config import Settings
from tests.conftest import REPO

VALUES = {
    "POSTGRES_PASSWORD": "k3v9-long-random-password",
    "MEMAUDIT_CALLBACK_SECRET": "x" * 40,
    "MEMAUDIT_PUBLIC_URL": "https://memaudit.example.com",
}


MLFLOW = {
    "MEMAUDIT_MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "MEMAUDIT_MLFLOW_WEBHOOK_SECRET": "q8v2-webhook-secret-of-mlflow",
    # README: inside compose the workers reach `mlflow:5000`, people another address.
    "MEMAUDIT_MLFLOW_UI_URL": "https://mlflow.example.com",
    "MEMAUDIT_MLFLOW_ATTACH_REPORT": "true",
}


def _substitute(value: str, values: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} with the values given."""

    def one(match: re.Match) -> str:
        name, default = match.group(1), match.group(3)
        if name in values:
            return values[name]
        assert match.group(2) != ":?", f"compose requires {name}"
        return default or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def _memaudit_services() -> dict[str, dict]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return {n: s for n, s in compose["services"].items() if s.get("image") == "memaudit:latest"}


def _settings(service: dict, values: dict[str, str], data_dir: Path) -> Settings:
    """The Settings a service starts with; raises where production refuses them."""
    env = {k: _substitute(str(v), values) for k, v in service["environment"].items()}
    assert env["MEMAUDIT_ENVIRONMENT"] == "production"
    fields = {k.removeprefix("MEMAUDIT_").lower(): v for k, v in env.items()}
    return Settings(**{**fields, "data_dir": data_dir})


def test_every_memaudit_service_has_a_valid_production_configuration(tmp_path) -> None:
    services = _memaudit_services()
    assert sorted(services) == ["api", "migrate", "scheduler", "worker"]
    for service in services.values():
        settings = _settings(service, VALUES, tmp_path)
        assert settings.database_url.startswith("postgresql+psycopg://")


def test_mlflow_is_off_unless_its_settings_are_given(tmp_path) -> None:
    for name, service in _memaudit_services().items():
        settings = _settings(service, VALUES, tmp_path)
        assert settings.mlflow_tracking_uri == "", name
        assert settings.mlflow_webhook_secret == "", name
        assert settings.mlflow_ui_url == "" and settings.mlflow_attach_report is False, name


def test_the_mlflow_settings_reach_the_api_the_worker_and_the_scheduler(tmp_path) -> None:
    """The API verifies deliveries and checks versions, the worker downloads and tags them, the
    scheduler plans the reconciliation: each needs the settings given to compose."""
    services = _memaudit_services()
    for name in ("api", "worker", "scheduler"):
        settings = _settings(services[name], {**VALUES, **MLFLOW}, tmp_path)
        assert settings.mlflow_tracking_uri == MLFLOW["MEMAUDIT_MLFLOW_TRACKING_URI"], name
        assert settings.mlflow_webhook_secret == MLFLOW["MEMAUDIT_MLFLOW_WEBHOOK_SECRET"], name
    # The dashboard's links (the API) and the report artifact (the worker).
    for name in ("api", "worker"):
        settings = _settings(services[name], {**VALUES, **MLFLOW}, tmp_path)
        assert settings.mlflow_ui_base == MLFLOW["MEMAUDIT_MLFLOW_UI_URL"], name
        assert settings.mlflow_attach_report is True, name


def test_the_image_copies_every_package_the_project_installs() -> None:
    """A package left out of the Dockerfile imports here and fails only in production."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert sorted(packages) == ["app", "core", "worker"]
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
