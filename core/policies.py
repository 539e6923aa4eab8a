"""Audit policies: what to audit when a registry announces a model version, and the verdict.

A policy names registered models by glob (`fraud-*`), the checks and dataset to run, and the
thresholds a summary must meet. Matching audits carry the policy's id; finalize records the
verdict on them, where the registry write-back and the dashboard read it.
"""

from __future__ import annotations

import hashlib
import logging
from fnmatch import fnmatchcase
from typing import Any

from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import baselines
from core.audit_log import acting_as, bound_actor, changes, policy_actor, record
from core.check_kinds import Catalog
from core.config import Settings
from core.db import utcnow
from core.errors import ApiError
from core.models import ApiKey, Audit, AuditPolicy, AuditStatus
from core.policy_fit import fit_warnings, read_profile
from core.relative import RELATIVE_NAMES, is_relative, relative_metric
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
from core.task_names import WRITE_BACK_TO_REGISTRY
from core.tenancy import team_by_name, team_owner
from core.verdicts import UnknownMetric, check_metric_name, has_relative

log = logging.getLogger(__name__)


def to_public(policy: AuditPolicy) -> PolicyPublic:
    return PolicyPublic.model_validate(policy, from_attributes=True)


# What a person writes in a policy, as the audit log shows it (warnings are derived, not set).
RECORDED_FIELDS = (
    "name",
    "team_id",
    "source",
    "model_pattern",
    "dataset_uri",
    "checks",
    "thresholds",
    "on_inconclusive",
    "enabled",
    "baseline",
)


def _recorded_fields(policy: AuditPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in RECORDED_FIELDS}


def _thresholds(thresholds: list[Threshold], baseline: str | None) -> list[dict]:
    for position, rule in enumerate(thresholds):
        where = f"thresholds[{position}]"
        try:
            check_metric_name(rule.metric)
        except UnknownMetric:
            raise ApiError(
                422,
                "unknown_metric",
                f"{where}: unknown metric {rule.metric!r}; see the verdict metric "
                "names in the README (e.g. extraction.greedy_extraction_rate, membership.loss.auc)",
            ) from None
        _check_condition(where, rule, baseline)
    return [rule.model_dump(exclude_none=True) for rule in thresholds]


def _check_condition(where: str, rule: Threshold, baseline: str | None) -> None:
    """A 422 for a condition that asks nothing, half an absolute threshold, or a comparison
    with a baseline the policy lacks or a metric that cannot be compared record by record."""
    if (rule.op is None) != (rule.value is None):
        raise ApiError(422, "invalid_condition", f"{where}: `op` and `value` go together")
    relative = is_relative(rule.model_dump())
    margins = (rule.min_absolute_change, rule.min_relative_change, rule.level)
    if not relative and any(m is not None for m in margins):
        raise ApiError(
            422,
            "invalid_condition",
            f"{where}: min_absolute_change, min_relative_change and level compare with the "
            "baseline: say which way is better with greater_is_better",
        )
    if not relative and rule.op is None:
        raise ApiError(
            422,
            "invalid_condition",
            f"{where}: give `op` and `value`, or greater_is_better to compare with the baseline",
        )
    if relative and relative_metric(rule.metric) is None:
        raise ApiError(
            422,
            "not_comparable",
            f"{where}: {rule.metric} cannot be compared with the baseline record by record; "
            f"comparable: {', '.join(RELATIVE_NAMES)}",
        )
    if relative and not baseline:
        raise ApiError(
            422,
            "baseline_required",
            f"{where}: a comparison with the baseline needs the policy's `baseline` (an MLflow "
            "alias such as champion, a Hub revision, or audit:<id>)",
        )


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
    if body.baseline is not None:
        baselines.check_baseline(session, body.source, team_id, body.baseline)
    thresholds = _thresholds(body.thresholds, body.baseline)
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
        baseline=body.baseline,
    )
    session.add(policy)
    session.flush()
    record(session, "policy.created", "policy", policy.id, _recorded_fields(policy))
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
    before = _recorded_fields(policy)
    dataset_uri = body.dataset.uri if body.dataset else policy.dataset_uri
    baseline = policy.baseline
    if body.baseline is not None:
        baseline = body.baseline or None  # "" removes it
        if baseline is not None:
            baselines.check_baseline(session, policy.source, policy.team_id, baseline)
    thresholds = policy.thresholds
    if body.thresholds is not None:
        thresholds = _thresholds(body.thresholds, baseline)
    elif baseline is None and has_relative(thresholds):
        raise ApiError(
            422,
            "baseline_required",
            "the policy's relative conditions compare with its baseline: keep it, or replace "
            "the thresholds",
        )
    policy.baseline = baseline
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
    changed = changes(before, _recorded_fields(policy))
    if changed:
        detail = {"name": policy.name, "changed": changed}
        record(session, "policy.updated", "policy", policy.id, detail)
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
    record(session, "policy.deleted", "policy", policy.id, _recorded_fields(policy))
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
    return idempotency_key(policy.id, model_uri, reaudit)


def idempotency_key(policy_id: str, model_uri: str, reaudit: str | None = None) -> str:
    """`policy_idempotency_key` from the policy's id alone (an audit knows only that)."""
    identity = f"{policy_id}|{model_uri}" + (f"|reaudit:{reaudit}" if reaudit is not None else "")
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
    # A re-audit on demand is its admin's act; a registry event's audit is the policy's.
    # The baseline's audit, when one is started for it, is the same actor's act.
    with acting_as(session, bound_actor(session) or policy_actor(policy)):
        audit, created = submit_audit(session, settings, body, owner, catalog, policy_id=policy.id)
        if created:
            if policy.baseline and has_relative(policy.thresholds):
                _attach_baseline(session, settings, celery, catalog, policy, audit)
            _announce_start(celery, settings, audit)
            enqueue_audit(session, celery, settings, audit)
    return audit, created


def _announce_start(celery: Celery, settings: Settings, audit: Audit) -> None:
    """Queue the registry write-back now, before the audit runs: the version's verdict tags
    read `pending` (promotion `blocked`) until it ends, so a gate never promotes on the verdict
    of an earlier audit that this re-audit is about to replace."""
    try:
        celery.send_task(WRITE_BACK_TO_REGISTRY, args=[audit.id], queue=settings.queue)
    except Exception:  # broker down: the audit still runs; its end writes the verdict
        log.exception("could not queue the pending write-back of audit %s", audit.id)


def _attach_baseline(
    session: Session,
    settings: Settings,
    celery: Celery,
    catalog: Catalog,
    policy: AuditPolicy,
    audit: Audit,
) -> None:
    """Resolve the policy's baseline for this new audit and name the audit its records are
    compared with: an earlier comparable audit of the baseline version, or one started now.
    The champion audited again compares with its earlier audit (or, the first time, itself)."""
    found = baselines.resolve(settings, session, policy, audit.model_uri or "")
    if "error" not in found and "audit_id" not in found:
        uri = found["model_uri"]
        earlier = baselines.reusable_audit(session, policy, uri, audit, besides=audit.id)
        if earlier is not None:
            found["audit_id"] = earlier.id
        elif uri == audit.model_uri:
            found["audit_id"] = audit.id
        else:
            try:
                found["audit_id"] = _start_baseline(
                    session, settings, celery, catalog, policy, uri, audit
                ).id
            except ApiError as exc:  # the team may not audit that version, say
                session.rollback()
                found["error"] = f"the baseline {uri} could not be audited: {exc.message}"
    baselines.record(session, audit, found)


def _start_baseline(
    session: Session,
    settings: Settings,
    celery: Celery,
    catalog: Catalog,
    policy: AuditPolicy,
    model_uri: str,
    candidate: Audit,
) -> Audit:
    """The policy's audit of the baseline version, started once: under the version's own key
    when the policy never audited it (so its announcement finds it), else under a key of what
    makes it comparable. It compares with itself: a baseline has no baseline. One under that
    key that failed or was cancelled is never reused: the next attempt gets a key of its own."""
    key = policy_idempotency_key(policy, model_uri)
    if find_idempotent(session, policy.team_id, key) is not None:
        comparable = f"baseline:{baselines.baseline_key(candidate)}"
        attempt = 1
        while True:
            suffix = comparable if attempt == 1 else f"{comparable}:attempt-{attempt}"
            key = policy_idempotency_key(policy, model_uri, suffix)
            existing = find_idempotent(session, policy.team_id, key)
            if existing is None:
                break
            if existing.status in (*AuditStatus.ACTIVE, AuditStatus.SUCCEEDED):
                return existing
            attempt += 1
    body = AuditCreate(
        model={"uri": model_uri},
        dataset={"uri": policy.dataset_uri},
        checks=policy.checks,
        labels={"policy": policy.name, baselines.BASELINE_LABEL: policy.baseline or ""},
        idempotency_key=key,
    )
    owner = team_owner(session, policy.team_id)
    audit, created = submit_audit(session, settings, body, owner, catalog, policy_id=policy.id)
    if created:
        itself = {"ref": policy.baseline, "model_uri": model_uri, "audit_id": audit.id}
        baselines.record(session, audit, {**itself, "version": audit.model_version})
        enqueue_audit(session, celery, settings, audit)
    return audit


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
