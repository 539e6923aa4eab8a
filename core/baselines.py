"""A policy's baseline: what its relative conditions compare a new version with.

A policy names it once (`baseline`): an MLflow alias (`champion`) or version number, a Hub
revision (branch, tag or commit), or a fixed audit (`audit:<id>`). Each policy audit resolves it
when it starts (an alias moves; the verdict must say what it was compared with) and records
the resolution on the audit. The baseline version's records come from an audit of it under the
same policy: same checks, same dataset (sha256), same code version. One that exists is reused;
else it is started once (idempotent), and the candidate's verdict waits for it
(worker/gates.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import core
from core.config import Settings
from core.errors import ApiError
from core.models import Audit, AuditPolicy, AuditStatus

AUDIT_PREFIX = "audit:"
MLFLOW_REF = re.compile(r"^[A-Za-z0-9_-]{1,255}$")  # an alias, or a version number
BASELINE_LABEL = "baseline"  # the label a baseline's own audit carries


def check_baseline(session: Session, source: str, team_id: str, baseline: str) -> None:
    """A 422 unless `baseline` names something this source can resolve (and a fixed audit is
    one of the team's audits of a model)."""
    if baseline.startswith(AUDIT_PREFIX):
        audit = session.get(Audit, baseline[len(AUDIT_PREFIX) :])
        if audit is None or audit.team_id != team_id or audit.model_uri is None:
            raise ApiError(
                422, "unknown_baseline", f"baseline: no audit of a model {baseline!r} in the team"
            )
        return
    if source == "wandb":
        if not MLFLOW_REF.match(baseline):
            raise ApiError(
                422,
                "invalid_baseline",
                f"baseline {baseline!r}: name a W&B alias (letters, digits, - and _), a version "
                "(v<N>), or audit:<id>",
            )
        return
    if source == "mlflow":
        if not MLFLOW_REF.match(baseline):
            raise ApiError(
                422,
                "invalid_baseline",
                f"baseline {baseline!r}: name an MLflow alias (letters, digits, - and _), a "
                "version number, or audit:<id>",
            )
        return
    from core.inspection import hf_models
    from core.inspection.errors import ModelError

    try:
        hf_models.check_revision(baseline)
    except ModelError as exc:
        raise ApiError(422, "invalid_baseline", f"baseline: {exc}") from None


def resolve(settings: Settings, session: Session, policy: AuditPolicy, model_uri: str) -> dict:
    """{ref, model_uri, version[, audit_id]} of the baseline now, or {ref, error} when it cannot
    be resolved (an alias not set yet, the registry down)."""
    ref = policy.baseline or ""
    if ref.startswith(AUDIT_PREFIX):
        fixed = session.get(Audit, ref[len(AUDIT_PREFIX) :])
        if fixed is None or fixed.model_uri is None:
            return {"ref": ref, "error": f"the baseline audit {ref} no longer exists"}
        return {
            "ref": ref,
            "model_uri": fixed.model_uri,
            "version": fixed.model_version,
            "audit_id": fixed.id,
        }
    try:
        if policy.source == "mlflow":
            return {"ref": ref, **_mlflow_version(settings, model_uri, ref)}
        if policy.source == "wandb":
            return {"ref": ref, **_wandb_version(settings, model_uri, ref)}
        return {"ref": ref, **_hub_commit(settings, model_uri, ref)}
    except Exception as exc:  # MlflowException, a connection error, a revision not found
        from core.integrations import scrubbed

        return {"ref": ref, "error": f"baseline {ref!r} not resolved: {scrubbed(str(exc))[:300]}"}


def _mlflow_version(settings: Settings, model_uri: str, ref: str) -> dict[str, str]:
    from core.inspection import mlflow_models

    name, _ = mlflow_models.parse_uri(model_uri)
    version = ref
    if not ref.isdigit():
        registry = mlflow_models.client(settings.mlflow_tracking_uri)
        version = str(registry.get_model_version_by_alias(name, ref).version)
    return {"model_uri": f"{mlflow_models.PREFIX}{name}/{version}", "version": version}


def _wandb_version(settings: Settings, model_uri: str, ref: str) -> dict[str, str]:
    from core.inspection import wandb_models
    from core.wandb_client import wandb_client

    candidate = wandb_models.parse_uri(model_uri)
    number = wandb_client(settings).resolve(candidate.path, ref)  # `v<N>` for an alias
    found = wandb_models.ArtifactVersion(
        candidate.entity, candidate.project, candidate.collection, number
    )
    return {"model_uri": found.uri, "version": number}


def _hub_commit(settings: Settings, model_uri: str, ref: str) -> dict[str, str]:
    from core.inspection import hf_models

    repo, _ = hf_models.parse_uri(model_uri)
    if hf_models.COMMIT.match(ref):
        commit = ref
    elif hf_models.offline():
        commit = hf_models._cached_commit(repo, ref, hf_models.cache_root(), settings.file_rules)
    else:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=settings.hf_endpoint or None, token=settings.hf_token or None)
        commit = str(api.model_info(repo, revision=ref).sha)
    return {"model_uri": f"{hf_models.PREFIX}{repo}@{commit}", "version": commit}


def baseline_key(audit: Audit) -> str:
    """What makes two audits of one version comparable: checks, dataset and code version."""
    identity = json.dumps(
        [audit.checks, audit.dataset_sha256, core.__version__], sort_keys=True, default=str
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:24]


def code_version(audit: Audit) -> str:
    """The code version an audit ran: its provenance's, or this code's for one not finalized
    yet (a candidate's verdict is reached while this process finalizes it)."""
    return str((audit.provenance or {}).get("code_version") or core.__version__)


def reusable_audit(
    session: Session, policy: AuditPolicy, model_uri: str, like: Audit, besides: str = ""
) -> Audit | None:
    """The policy's audit of the baseline version (other than `besides`) that ran, or runs,
    what `like` runs: the same checks on the same dataset bytes, by this code version. The
    newest that succeeded, else the newest still running: a verdict need not wait for a
    re-audit when a finished comparable audit exists."""
    found = session.scalars(
        select(Audit)
        .where(
            Audit.policy_id == policy.id,
            Audit.model_uri == model_uri,
            Audit.dataset_sha256 == like.dataset_sha256,
            Audit.status.in_((*AuditStatus.ACTIVE, AuditStatus.SUCCEEDED)),
        )
        .order_by(Audit.created_at.desc())
    )
    comparable = [
        audit
        for audit in found
        if audit.id != besides
        and audit.checks == like.checks
        and code_version(audit) == core.__version__
    ]
    succeeded = [audit for audit in comparable if audit.status == AuditStatus.SUCCEEDED]
    return next(iter(succeeded or comparable), None)


def record(session: Session, audit: Audit, found: dict[str, Any]) -> None:
    """The resolution on the candidate: what its relative conditions compare with."""
    audit.baseline = found
    audit.baseline_audit_id = found.get("audit_id")
    session.commit()
