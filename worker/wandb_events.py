"""Weights & Biases registry automations turned into policy audits: model_registry's
`handle_delivery` asks `action` what a recorded W&B delivery (app/wandb_hooks.py) starts.

- `LINK_ARTIFACT` (a new version linked to a registry collection) is always audited;
  `ADD_ARTIFACT_ALIAS` when the alias is one of MEMAUDIT_WANDB_ALIASES (default `production`).
- A policy with `source: wandb` matches its `model_pattern` against the collection's path
  `<entity>/<project>/<collection>` (a registry's project is `wandb-registry-<registry>`, so
  `acme/wandb-registry-model/*` is every collection of acme's model registry).
- An alias event may render the alias where the version number goes; the client resolves it
  when the delivery is handled (an alias moved in between resolves to its new version).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.config import Settings
from core.inspection import wandb_models
from core.inspection.errors import ModelError
from core.integrations import scrubbed
from core.wandb_client import wandb_client

LINK = "LINK_ARTIFACT"
ADD_ALIAS = "ADD_ARTIFACT_ALIAS"
MAX_LABEL_CHARS = 200


def action(
    payload: Mapping[str, Any], settings: Settings
) -> tuple[str, str, str, dict[str, str]] | tuple[str, str]:
    """("start", collection path, model URI, labels) or ("ignore", reason); raises ModelError
    when W&B cannot resolve the alias the event names."""
    event, alias = str(payload.get("event_type", "")), str(payload.get("alias") or "")
    if event == ADD_ALIAS and alias not in settings.wandb_audit_aliases:
        allowed = ", ".join(settings.wandb_audit_aliases) or "none"
        return "ignore", f"alias {alias!r} starts nothing (MEMAUDIT_WANDB_ALIASES: {allowed})"
    if event not in (LINK, ADD_ALIAS):
        return "ignore", f"event {event or '(none)'} starts nothing"
    try:
        path, ref = wandb_models.parse_version_string(
            str(payload.get("artifact_version_string", ""))
        )
    except ModelError as exc:
        return "ignore", f"artifact_version_string: {exc}"
    # An alias W&B could not resolve (down, or not yet showing it) raises: the delivery ends
    # `failed`, not `ignored`, so W&B's redelivery of the event is handled again
    # (app/wandb_hooks.py) rather than answered as a duplicate.
    number = ref if wandb_models.VERSION_NUMBER.match(ref) else _resolve(settings, path, ref)
    try:
        version = wandb_models.version_of(path, number)
    except ModelError as exc:
        return "ignore", str(exc)
    labels = {"wandb.event": event}
    if alias:
        labels["wandb.alias"] = alias[:MAX_LABEL_CHARS]
    if payload.get("event_author"):
        labels["wandb.author"] = str(payload["event_author"])[:MAX_LABEL_CHARS]
    return "start", version.path, version.uri, labels


def _resolve(settings: Settings, path: str, ref: str) -> str:
    """The version number an alias names now, read through the W&B client."""
    try:
        return wandb_client(settings).resolve(path, ref)
    except ModelError:
        raise
    except Exception as exc:  # the client's errors: not found, no access, network
        reason = f"{type(exc).__name__}: {scrubbed(str(exc))[:300]}"
        raise ModelError(f"could not resolve {path}:{ref} in W&B: {reason}") from None
