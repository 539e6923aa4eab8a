"""The start-up lines that say which registry integrations are on."""

from __future__ import annotations

import logging

from core.config import Settings
from core.integrations import (
    huggingface_line,
    mlflow_line,
    reconciliation_line,
    redacted,
    wandb_line,
)


def test_each_integration_says_whether_it_is_on(tmp_path) -> None:
    off = Settings(data_dir=tmp_path)
    assert mlflow_line(off) == (
        "integration mlflow: webhook off (set MEMAUDIT_MLFLOW_WEBHOOK_SECRET to receive "
        "deliveries); tracking URI not set (no tag write-back, no reconciliation)"
    )
    assert huggingface_line(off).startswith("integration huggingface: webhook off")
    assert reconciliation_line(off).startswith("MLflow reconciliation off")
    on = Settings(
        data_dir=tmp_path,
        mlflow_tracking_uri="https://ops:hunter2@mlflow.example",
        mlflow_webhook_secret="s" * 32,
        hf_webhook_secret="h" * 32,
        registry_poll_seconds=120,
    )
    line = mlflow_line(on)
    assert line.startswith("integration mlflow: webhook on (POST /v1/hooks/mlflow)")
    assert "https://ops:***@mlflow.example" in line and "every 120 s" in line
    assert "hunter2" not in line + reconciliation_line(on)
    assert "s" * 32 not in line
    assert (
        huggingface_line(on) == "integration huggingface: webhook on (POST /v1/hooks/huggingface)"
    )
    assert reconciliation_line(on).startswith("MLflow reconciliation every 120 s")


def test_redaction_keeps_a_uri_without_a_password() -> None:
    assert redacted("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert redacted("databricks") == "databricks"
    assert redacted("http://u:p@h:1/x") == "http://u:***@h:1/x"


def test_the_api_logs_its_integrations_once_at_start(make_stack, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="core.integrations"):
        make_stack(mlflow_webhook_secret="x" * 32)
    lines = [r.getMessage() for r in caplog.records if r.name == "core.integrations"]
    assert len(lines) == 3
    assert lines[0].startswith("integration mlflow: webhook on")
    assert lines[1].startswith("integration huggingface: webhook off")
    assert lines[2].startswith("integration wandb: webhook off")


def test_the_wandb_line_names_its_signature_and_aliases_never_its_secrets(tmp_path) -> None:
    token, secret = "t" * 32, "s" * 32
    assert wandb_line(Settings(data_dir=tmp_path)).startswith("integration wandb: webhook off")
    on = Settings(data_dir=tmp_path, wandb_webhook_token=token, wandb_webhook_secret=secret)
    assert wandb_line(on) == (
        "integration wandb: webhook on (POST /v1/hooks/wandb, signature required); "
        "audited aliases: production"
    )
    unsigned = Settings(data_dir=tmp_path, wandb_webhook_token=token, wandb_aliases="prod,qa")
    assert "no signing secret" in wandb_line(unsigned) and "prod, qa" in wandb_line(unsigned)
    assert token not in repr(on) and secret not in repr(on)


def test_redaction_hides_a_token_given_as_the_user_alone() -> None:
    """`https://<token>@host` is basic auth with the token as the user name: a secret too."""
    assert redacted("https://dapi-s3cret@mlflow.example/x") == "https://***@mlflow.example/x"


def test_credentials_in_an_mlflow_error_message_are_scrubbed() -> None:
    """MLflow's client names the URL it called, credentials included, in its exceptions: what
    the worker logs of a failed write-back or reconciliation must not carry them."""
    from core.integrations import scrubbed

    message = (
        "API request to http://ci:s3cret-pw@mlflow:5000/api/2.0/mlflow/model-versions/get failed "
        "with exception ...; retried https://tok3n@mlflow.example/x"
    )
    assert scrubbed(message) == (
        "API request to http://***@mlflow:5000/api/2.0/mlflow/model-versions/get failed "
        "with exception ...; retried https://***@mlflow.example/x"
    )
    assert scrubbed("no URL here: name 'a@b' is odd") == "no URL here: name 'a@b' is odd"
