from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.config import Settings


def test_embedded_defaults_live_in_the_data_dir(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path}/memaudit.db"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path}/broker.db"
    assert settings.model_root_paths == [tmp_path / "models"]
    assert settings.data_root_paths == [tmp_path / "data"]


def test_roots_are_path_separated_lists(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, model_roots=f"{tmp_path}/a:{tmp_path}/b")
    assert settings.model_root_paths == [tmp_path / "a", tmp_path / "b"]


def test_production_refuses_sqlite(tmp_path) -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        Settings(data_dir=tmp_path, environment="production")


def test_hard_time_limit_must_exceed_soft(tmp_path) -> None:
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, task_soft_time_limit=100, task_time_limit=50)


PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql+psycopg://memaudit:k8s-9f2c1e7a4b@db:5432/memaudit",
    "broker_url": "redis://redis:6379/0",
    "callback_secret": "c" * 40,
}


def test_a_sound_production_configuration_starts(tmp_path) -> None:
    Settings(data_dir=tmp_path, **PRODUCTION)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"broker_url": ""}, "embedded broker"),
        ({"callback_secret": "short"}, "CALLBACK_SECRET"),
        ({"callback_secret": ""}, "CALLBACK_SECRET"),
        (
            {"database_url": "postgresql+psycopg://memaudit:change-me@db/memaudit"},
            "password in MEMAUDIT_DATABASE_URL is a well-known default",
        ),
        ({"broker_url": "redis://:password@redis:6379/0"}, "BROKER_URL is a well-known default"),
        ({"mlflow_webhook_secret": "secret"}, "MLFLOW_WEBHOOK_SECRET is a well-known default"),
        ({"hf_webhook_secret": "tiny"}, "16 characters or more"),
        ({"smtp_password": "password"}, "SMTP_PASSWORD is a well-known default"),
        (
            {"smtp_password": "relay-9f2c1e7a4b", "smtp_security": "none"},
            "SMTP_PASSWORD would cross the network in clear",
        ),
        ({"smtp_host": "relay.internal"}, "needs MEMAUDIT_SMTP_ALLOWED_DOMAINS"),
        ({"smtp_host": "relay.internal", "smtp_allowed_domains": " , "}, "ALLOWED_DOMAINS"),
        ({"wandb_webhook_token": "short-token"}, "WANDB_WEBHOOK_TOKEN must be 16"),
        ({"wandb_webhook_secret": "short-secret"}, "WANDB_WEBHOOK_SECRET must be 16"),
        ({"wandb_api_key": "changeme"}, "WANDB_API_KEY is a well-known default"),
        ({"environment": "prod"}, "development or production"),
    ],
)
def test_production_refuses_insecure_settings(tmp_path, change, message) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(data_dir=tmp_path, **{**PRODUCTION, **change})


def test_a_production_relay_mails_only_the_allowed_domains(tmp_path) -> None:
    """Without the list any submit key could mail anyone through the operator's relay."""
    relay = {"smtp_host": "relay.internal", "smtp_allowed_domains": "Example.org, @corp.example."}
    settings = Settings(data_dir=tmp_path, **{**PRODUCTION, **relay})
    assert settings.smtp_domains == ["example.org", "corp.example"]


def test_device_settings_parse_and_refuse_what_is_not_a_device(tmp_path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        worker_gpus="0, 1",
        gpu_memory="0:75GiB,1:80GB,cpu:200GiB",
        large_model_queue="memaudit-large",
        large_model_min_bytes="60GiB",
    )
    assert settings.worker_gpu_ids == [0, 1]
    assert settings.gpu_memory_budgets == {0: 75 * 2**30, 1: 80 * 10**9, "cpu": 200 * 2**30}
    assert settings.large_model_min_bytes == 60 * 2**30
    assert Settings(data_dir=tmp_path).worker_gpu_ids == []
    for field, value, message in [
        ("gpu_memory", "gpu0:75GiB", "MEMAUDIT_GPU_MEMORY"),
        ("gpu_memory", "0:75 parsecs", "not a size"),
        ("worker_gpus", "cuda:0", "MEMAUDIT_WORKER_GPUS"),
        ("large_model_min_bytes", "big", "MEMAUDIT_LARGE_MODEL_MIN_BYTES"),
        ("large_model_min_bytes", "-1GiB", "at least one byte"),
        ("large_model_min_bytes", "0.5", "at least one byte"),
        ("large_model_min_bytes", "1e400GB", "finite"),
        ("large_model_min_bytes", "1.2.3GB", "not a size"),
        ("gpu_memory", "0:-5GiB", "at least one byte"),
        ("gpu_memory", "0:75GiB,0:1GiB", "budgeted twice"),
        ("worker_gpus", "0,0", "named twice"),
    ]:
        with pytest.raises(ValidationError, match=message):
            Settings(data_dir=tmp_path, **{field: value})
    with pytest.raises(ValidationError, match="does not give this worker"):
        Settings(data_dir=tmp_path, worker_gpus="0,1", gpu_memory="0:75GiB,7:75GiB")
