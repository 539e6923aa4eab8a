"""Audit policies: what to audit when a registry announces a model version, and the verdict.

A policy names registered models by glob (`fraud-*`), the checks and dataset to run, and the
thresholds a summary must meet. Matching audits carry the policy's id; finalize records the
verdict on them, where the registry write-back and the dashboard read it.
"""

from __future__ import annotations

import hashlib
from fnmatch import fnmatchcase
from typing import Any

from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.check_kinds import Catalog
from core.config import Settings
from core.db import utcnow
from core.errors import ApiError
from core.models import ApiKey, Audit, AuditPolicy
from core.policy_fit import fit_warnings, read_profile
from core.schemas import (
    AuditCreate,
    CheckRequest,
    PolicyCreate,
    PolicyPublic,
    PolicyUpdate,
    Threshold,
)
from core.submission import (
    enqueue_audit,
    find_idempotent,
    resolve_dataset,
    submit_audit,
    validate_checks,
)
from core.tenancy import team_by_name, team_owner
from core.verdicts import UnknownMetric, check_metric_name


def to_public(policy: AuditPolicy) -> PolicyPublic:
    return PolicyPublic.model_validate(policy, from_attributes=True)


def _thresholds(thresholds: list[Threshold]) -> list[dict]:
    for position, rule in enumerate(thresholds):
        try:
            check_metric_name(rule.metric)
        except UnknownMetric:
            raise ApiError(
                422,
                "unknown_metric",
                f"thresholds[{position}]: unknown metric {rule.metric!r}; see the verdict metric "
                "names in the README (e.g. extraction.greedy_extraction_rate, membership.loss.auc)",
            ) from None
    return [rule.model_dump() for rule in thresholds]


def _fitted_checks(
    session: Session,
    settings: Settings,
    catalog: Catalog,
    team_id: str,
    dataset_uri: str,
    checks: list,
    thresholds: list[dict],
) -> tuple[list[dict], list[dict]]:
    """The checks as the policy's team could submit them (its dataset, its grants), and the
    warnings of a pass over the dataset; a 422 where they cannot fit it (`core/policy_fit.py`)."""
    owner = team_owner(session, team_id)
    dataset = resolve_dataset(session, settings, dataset_uri, owner)
    if dataset.n_records == 0:
        raise ApiError(422, "empty_dataset", f"dataset {dataset_uri} has no records")
    # The model is not known until a version arrives: its kind is checked then.
    validated = validate_checks(
        checks,
        dataset,
        catalog=catalog,
        has_reference=False,
        model_kind=None,
        settings=settings,
        owner=owner,
        session=session,
    )
    profile = read_profile(settings, owner, dataset, catalog, validated)
    return validated, fit_warnings(catalog, validated, thresholds, profile)


def _team_id(session: Session, name: str | None, key: ApiKey) -> str:
    if name is None:
        return key.team_id
    team = team_by_name(session, name)
    if team is None:
        raise ApiError(422, "unknown_team", f"no team named {name!r}")
    return team.id


def create_policy(
    session: Session, settings: Settings, catalog: Catalog, body: PolicyCreate, key: ApiKey
) -> AuditPolicy:
    if session.scalar(select(AuditPolicy).where(AuditPolicy.name == body.name)) is not None:
        raise ApiError(409, "policy_exists", f"a policy named {body.name!r} exists")
    team_id = _team_id(session, body.team, key)
    thresholds = _thresholds(body.thresholds)
    checks, warnings = _fitted_checks(
        session, settings, catalog, team_id, body.dataset.uri, body.checks, thresholds
    )
    policy = AuditPolicy(
        team_id=team_id,
        name=body.name,
        source=body.source,
        model_pattern=body.model_pattern,
        dataset_uri=body.dataset.uri,
        checks=checks,
        thresholds=thresholds,
        on_inconclusive=body.on_inconclusive,
        enabled=body.enabled,
        warnings=warnings,
    )
    session.add(policy)
    session.commit()
    return policy


def get_policy(session: Session, policy_id: str) -> AuditPolicy:
    policy = session.get(AuditPolicy, policy_id)
    if policy is None:
        raise ApiError(404, "not_found", f"no policy {policy_id!r}")
    return policy


def update_policy(
    session: Session,
    settings: Settings,
    catalog: Catalog,
    policy: AuditPolicy,
    body: PolicyUpdate,
) -> AuditPolicy:
    dataset_uri = body.dataset.uri if body.dataset else policy.dataset_uri
    thresholds = policy.thresholds
    if body.thresholds is not None:
        thresholds = _thresholds(body.thresholds)
    if body.checks is not None or body.dataset is not None or body.thresholds is not None:
        requested = body.checks
        if requested is None:  # the stored checks, validated again against the new data
            requested = [CheckRequest.model_validate(check) for check in policy.checks]
        checks, warnings = _fitted_checks(
            session, settings, catalog, policy.team_id, dataset_uri, requested, thresholds
        )
        # An audit's token counts hold for the checks and data it ran: kept while they stand.
        same_run = checks == policy.checks and dataset_uri == policy.dataset_uri
        kept = [w for w in policy.warnings if w["source"] == "audit"] if same_run else []
        policy.checks, policy.dataset_uri, policy.warnings = checks, dataset_uri, warnings + kept
        policy.thresholds = thresholds
    if body.on_inconclusive is not None:
        policy.on_inconclusive = body.on_inconclusive
    if body.model_pattern is not None:
        policy.model_pattern = body.model_pattern
    if body.enabled is not None:
        policy.enabled = body.enabled
    policy.updated_at = utcnow()
    session.commit()
    return policy


MAX_AUDIT_WARNINGS = 20  # the newest models' warnings; a policy matching hundreds keeps these


def audit_warnings(policy: AuditPolicy, audit: Audit, summary: dict[str, Any]) -> list[dict]:
    """The policy's warnings once this audit of it is summarized: each check's `unfit` (the
    records this model could not score) replaces what an earlier audit of the same model said.
    An audit of checks or data the policy no longer names leaves them as they are."""
    if audit.checks != policy.checks or audit.dataset_uri != policy.dataset_uri:
        return list(policy.warnings)
    model = audit.model_family or audit.model_uri or ""
    found = [
        {
            "source": "audit",
            "check": check,
            "message": part["unfit"],
            "model": model,
            "model_uri": audit.model_uri or "",
            "audit_id": audit.id,
        }
        for check, part in summary.items()
        if isinstance(part, dict) and part.get("unfit")
    ]
    dataset = [w for w in policy.warnings if w["source"] != "audit"]
    earlier = [w for w in policy.warnings if w["source"] == "audit" and w["model"] != model]
    return dataset + (earlier + found)[-MAX_AUDIT_WARNINGS:]


def list_policies(session: Session, limit: int, offset: int) -> tuple[list[AuditPolicy], int]:
    count = session.scalar(select(func.count()).select_from(AuditPolicy))
    rows = session.scalars(
        select(AuditPolicy).order_by(AuditPolicy.name).limit(limit).offset(offset)
    ).all()
    return list(rows), int(count or 0)


def delete_policy(session: Session, policy: AuditPolicy) -> None:
    session.delete(policy)  # its audits stay; their policy_id becomes NULL
    session.commit()


def enabled_policies(session: Session, source: str) -> list[AuditPolicy]:
    return list(
        session.scalars(
            select(AuditPolicy)
            .where(AuditPolicy.source == source, AuditPolicy.enabled.is_(True))
            .order_by(AuditPolicy.name)
        )
    )


def matches(policy: AuditPolicy, model_name: str) -> bool:
    """The policy's glob against a registered model's name (case-sensitive)."""
    return fnmatchcase(model_name, policy.model_pattern)


def matching_policies(session: Session, source: str, model_name: str) -> list[AuditPolicy]:
    return [p for p in enabled_policies(session, source) if matches(p, model_name)]


def policy_idempotency_key(policy: AuditPolicy, model_uri: str, reaudit: str | None = None) -> str:
    """One audit per policy and model version, however often the version is announced; a
    re-audit is one more per value of its key, however often that value is delivered."""
    identity = f"{policy.id}|{model_uri}" + (f"|reaudit:{reaudit}" if reaudit is not None else "")
    digest = hashlib.sha256(identity.encode()).hexdigest()[:40]
    return f"policy:{digest}"


def start_policy_audit(
    session: Session,
    settings: Settings,
    celery: Celery,
    catalog: Catalog,
    policy: AuditPolicy,
    model_uri: str,
    labels: dict[str, str],
    reaudit: str | None = None,
) -> tuple[Audit, bool]:
    """The policy's audit of one model version: (audit, created now). `reaudit` names a
    re-audit on demand: a fresh audit once per value, besides the version's first audit."""
    extra = {"reaudit": reaudit} if reaudit is not None else {}
    body = AuditCreate(
        model={"uri": model_uri},
        dataset={"uri": policy.dataset_uri},
        checks=policy.checks,
        labels={**labels, **extra, "policy": policy.name},
        idempotency_key=policy_idempotency_key(policy, model_uri, reaudit),
    )
    # submit_audit is idempotent too, but only after it has validated the request (a registry
    # call, a dataset read); reconciliation re-announces every recent version each round.
    existing = find_idempotent(session, policy.team_id, body.idempotency_key)
    if existing is not None:
        return existing, False
    owner = team_owner(session, policy.team_id)
    audit, created = submit_audit(session, settings, body, owner, catalog, policy_id=policy.id)
    if created:
        enqueue_audit(session, celery, settings, audit)
    return audit, created


def registered_name(source: str, model_uri: str) -> str:
    """The registry's name of the model a policy URI names; ApiError when the URI is not one of
    this source's versions."""
    from core.inspection import hf_models, mlflow_models, wandb_models
    from core.inspection.errors import ModelError

    parsers = {
        "mlflow": lambda uri: mlflow_models.parse_uri(uri)[0],
        "huggingface": lambda uri: hf_models.parse_uri(uri)[0],
        "wandb": lambda uri: wandb_models.parse_uri(uri).path,
    }
    try:
        return parsers[source](model_uri)
    except ModelError as exc:
        raise ApiError(422, "invalid_model", f"model_uri: {exc}") from None


def reaudit(
    session: Session,
    settings: Settings,
    celery: Celery,
    catalog: Catalog,
    policy: AuditPolicy,
    model_uri: str,
    key: str,
) -> tuple[Audit, bool]:
    """A re-audit on demand of one version the policy covers: (audit, created now). The same
    key returns the same audit; a policy that would not audit this version refuses."""
    if not policy.enabled:
        raise ApiError(
            409, "policy_disabled", f"policy {policy.name!r} is disabled; enable it to re-audit"
        )
    name = registered_name(policy.source, model_uri)
    if not matches(policy, name):
        raise ApiError(
            422,
            "model_not_matched",
            f"{name!r} does not match policy {policy.name!r}'s pattern {policy.model_pattern!r}",
        )
    return start_policy_audit(session, settings, celery, catalog, policy, model_uri, {}, key)
