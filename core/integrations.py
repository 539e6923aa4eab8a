"""One start-up line per registry integration, so a log shows what is on before any delivery
arrives (or silently does not): the webhooks, the tracking server, the reconciliation."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

from core.config import Settings

log = logging.getLogger(__name__)


def redacted(uri: str) -> str:
    """A URI without the password it may carry (http://user:***@host), or the token given as
    its user alone (https://***@host)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    host = parts.netloc.rpartition("@")[2]
    if parts.password is None:
        return urlunsplit(parts._replace(netloc=f"***@{host}"))
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def scrubbed(text: str) -> str:
    """A message (an MLflow client error names the URL it called) without the user and
    password of any URL in it."""
    return URL_CREDENTIALS.sub("***@", text)


def reconciliation_line(settings: Settings) -> str:
    if not settings.mlflow_tracking_uri:
        return "MLflow reconciliation off: MEMAUDIT_MLFLOW_TRACKING_URI is not set"
    return (
        f"MLflow reconciliation every {settings.registry_poll_seconds:g} s over versions of the "
        f"last {settings.registry_lookback_days:g} days at {redacted(settings.mlflow_tracking_uri)}"
    )


def mlflow_line(settings: Settings) -> str:
    webhook = (
        "webhook on (POST /v1/hooks/mlflow)"
        if settings.mlflow_webhook_secret
        else "webhook off (set MEMAUDIT_MLFLOW_WEBHOOK_SECRET to receive deliveries)"
    )
    if settings.mlflow_tracking_uri:
        registry = (
            f"tracking URI {redacted(settings.mlflow_tracking_uri)} (tag write-back on), "
            f"reconciliation every {settings.registry_poll_seconds:g} s"
        )
    else:
        registry = "tracking URI not set (no tag write-back, no reconciliation)"
    return f"integration mlflow: {webhook}; {registry}"


def huggingface_line(settings: Settings) -> str:
    webhook = (
        "webhook on (POST /v1/hooks/huggingface)"
        if settings.hf_webhook_secret
        else "webhook off (set MEMAUDIT_HF_WEBHOOK_SECRET to receive deliveries)"
    )
    return f"integration huggingface: {webhook}"


def wandb_line(settings: Settings) -> str:
    if not settings.wandb_webhook_token:
        return (
            "integration wandb: webhook off (set MEMAUDIT_WANDB_WEBHOOK_TOKEN to receive "
            "deliveries)"
        )
    signed = "signature required" if settings.wandb_webhook_secret else "no signing secret"
    aliases = ", ".join(settings.wandb_audit_aliases) or "none"
    return (
        f"integration wandb: webhook on (POST /v1/hooks/wandb, {signed}); "
        f"audited aliases: {aliases}"
    )


def log_integrations(settings: Settings) -> None:
    for line in (mlflow_line(settings), huggingface_line(settings), wandb_line(settings)):
        log.info(line)
