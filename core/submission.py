"""Audit submission: everything checkable at submit time is checked, then the audit and its
shards are written and sent. Used by the API's routes and by policies (started in a worker
when a registry version arrives), so it lives in the core."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from celery import Celery
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit_log import record
from core.check_kinds import NO_MODEL, Catalog, SubmitContext, UnknownCheck
from core.config import Settings
from core.confinement import PathRefused, pin
from core.db import utcnow
from core.errors import ApiError
from core.inspection import chat_endpoints, hf_models, mlflow_models, wandb_models
from core.inspection.datasets import DatasetError, DatasetLimitExceeded, inspect_dataset_file
from core.inspection.errors import ModelError
from core.inspection.models import resolve_model
from core.inspection.tokenizers import check_same_tokenizer
from core.model_identity import family_and_version
from core.models import (
    ApiKey,
    Audit,
    AuditStatus,
    Dataset,
    Shard,
    ShardStatus,
)
from core.outbound import UrlNotAllowed, check_url
from core.schemas import AuditCreate, CheckRequest
from core.task_names import RUN_SHARD
from core.tenancy import Grants, NotGranted, Owner, check_model_grant

log = logging.getLogger(__name__)


def limit_error(name: str, exc: DatasetLimitExceeded) -> ApiError:
    return ApiError(
        413,
        "limit_exceeded",
        f"{name}: {exc}",
        {"limit": exc.limit, "value": exc.value, "line": exc.line_no},
    )


@dataclass(frozen=True)
class ResolvedDataset:
    uri: str
    sha256: str
    n_records: int
    fields: list[str]


def resolve_dataset(
    session: Session, settings: Settings, uri: str, owner: Owner
) -> ResolvedDataset:
    """A dataset the owner may read: one of its team's uploads, or a file in its data folders."""
    scheme, _, rest = uri.partition(":")
    if scheme == "dataset":
        row = session.get(Dataset, rest)
        if row is None or not owner.sees(row.team_id):
            raise ApiError(
                422,
                "unknown_dataset",
                f"no dataset with id {rest!r}; upload it with POST /v1/datasets first",
            )
        return ResolvedDataset(uri, row.sha256, row.n_records, list(row.fields))
    if scheme == "path":
        try:
            with pin(
                rest,
                owner.grants.data_roots(settings),
                kind="dataset",
                want="file",
                rules=settings.file_rules,
            ) as pinned:
                info = inspect_dataset_file(pinned.readable, settings.dataset_limits)
        except (PathRefused, PermissionError) as exc:
            raise ApiError(422, "invalid_dataset", str(exc)) from None
        except DatasetLimitExceeded as exc:
            raise limit_error(rest, exc) from None
        except DatasetError as exc:
            raise ApiError(422, "invalid_dataset", f"{rest}: {exc}") from None
        return ResolvedDataset(uri, info.sha256, info.n_records, info.fields)
    raise ApiError(
        422,
        "invalid_dataset",
        f"unsupported dataset URI {uri!r}: use dataset:<id> or path:<absolute file>",
    )


@dataclass(frozen=True)
class ResolvedAudit:
    id: str
    status: str
    check_kinds: list[str]
    dataset_uri: str
    dataset_sha256: str
    model_uri: str | None


def resolve_audit(session: Session, audit_id: str, owner: Owner) -> ResolvedAudit:
    """An earlier audit the owner's team can see (an audit of another team reads as unknown,
    so its existence is not revealed)."""
    row = session.get(Audit, audit_id)
    if row is None or not owner.sees(row.team_id):
        raise ApiError(
            422, "unknown_audit", f"no audit with id {audit_id!r} that this key's team can see"
        )
    return ResolvedAudit(
        row.id,
        row.status,
        [check["kind"] for check in row.checks],
        row.dataset_uri,
        row.dataset_sha256,
        row.model_uri,
    )


def _model_kind(settings: Settings, grants: Grants, uri: str, field: str = "model") -> str | None:
    """Check a model URI at submit time (the team's grants, the roots, the files); the kind of
    model it names."""
    try:
        check_model_grant(grants, uri)
        # Registry models: what the artifacts hold is known once the worker has them; it
        # checks, and fails the audit clearly, if the checks cannot run on that kind.
        if uri.startswith(hf_models.PREFIX):
            hf_models.parse_uri(uri)  # a revision is a commit or a ref name, never a path
            if not hf_models.offline():
                return None  # the worker downloads it
            local = hf_models.snapshot(uri, download=False, cache_dir=settings.hf_cache_dir)
            root = hf_models.cache_root(settings.hf_cache_dir)
            return resolve_model(f"path:{local}", [root], rules=settings.file_rules).kind
        if uri.startswith(mlflow_models.PREFIX):
            mlflow_models.check_version(uri, settings.mlflow_tracking_uri)
            return None
        if uri.startswith(wandb_models.PREFIX):
            wandb_models.parse_uri(uri)  # a version number, never an alias or a path
            return None  # the worker downloads it through the W&B client
        if chat_endpoints.is_endpoint(uri):
            chat_endpoints.parse_uri(uri, settings.chat_hosts)
            return "chat_endpoint"
        return resolve_model(
            uri,
            grants.model_roots(settings),
            allow_pickle=settings.allow_pickle_weights,
            allow_torchscript=settings.allow_torchscript,
            rules=settings.file_rules,
        ).kind
    except (ModelError, NotGranted) as exc:
        raise ApiError(422, "invalid_model", f"{field}: {exc}") from None


def _earlier_versions(settings: Settings, uri: str) -> list[str]:
    """The registry's versions of this model before it, oldest first."""
    if not uri.startswith(mlflow_models.PREFIX):
        raise ValueError(
            f"{uri} is not a registered model version: versions_from needs an "
            "mlflow:models:/<name>/<version> model (list the versions instead)"
        )
    return mlflow_models.earlier_versions(uri, settings.mlflow_tracking_uri)  # ModelError: 422


def validate_checks(
    requests: Sequence[CheckRequest],
    dataset: ResolvedDataset,
    *,
    catalog: Catalog,
    has_reference: bool,
    model_kind: str | None,
    settings: Settings | None = None,
    model_uri: str | None = None,
    owner: Owner | None = None,
    session: Session | None = None,
    reference_uri: str | None = None,
) -> list[dict[str, Any]]:
    """Each check's params through the registry; the model kind too when it is known, and the
    models and datasets params name, against the owner's grants."""
    checks = []
    for position, request in enumerate(requests):
        try:
            kind = catalog.get_check(request.kind)
        except UnknownCheck as exc:
            raise ApiError(
                422, "unknown_check_kind", str(exc), {"check": position, "kind": request.kind}
            ) from None
        try:
            params = kind.parse_params(request.params)
        except ValidationError as exc:
            detail = [
                {"loc": ["checks", position, "params", *e["loc"]], "msg": e["msg"]}
                for e in exc.errors()
            ]
            raise ApiError(
                422, "invalid_params", f"invalid params for check {kind.name!r}", detail
            ) from None
        context = SubmitContext(has_reference)
        if settings is not None and owner is not None and session is not None:
            field = f"checks[{position}].params"
            context = SubmitContext(
                has_reference,
                partial(_model_kind, settings, owner.grants, field=field),
                model_uri=model_uri,
                earlier_versions=partial(_earlier_versions, settings),
                resolve_dataset=partial(resolve_dataset, session, settings, owner=owner),
                resolve_audit=partial(resolve_audit, session, owner=owner),
                compare_tokenizers=partial(
                    check_same_tokenizer,
                    model_uri,
                    reference_uri,
                    owner.grants.model_roots(settings),
                    settings.file_rules,
                )
                if model_uri and reference_uri
                else None,
            )
        try:
            completed = kind.validate(params, context)
            params = completed if completed is not None else params
        except ValueError as exc:
            raise ApiError(422, "invalid_params", f"check {kind.name!r}: {exc}") from None
        if model_kind == NO_MODEL and not kind.runs_without_model:
            raise ApiError(
                422,
                "model_required",
                f"check {kind.name!r} needs a model ({', '.join(kind.model_kinds)}); "
                'name one under "model", or run only checks that need none',
                {"check": position, "kind": kind.name},
            )
        if model_kind is not None and model_kind not in kind.model_kinds:
            raise ApiError(
                422,
                "unsupported_model_kind",
                f"check {kind.name!r} supports "
                f"{', '.join(kind.model_kinds)} models, not {model_kind}",
            )
        missing = [name for name in kind.required_fields if name not in dataset.fields]
        if missing:
            raise ApiError(
                422,
                "missing_dataset_fields",
                f"check {kind.name!r} needs dataset "
                f"fields {missing}; the dataset has {dataset.fields}",
            )
        if any(existing["kind"] == kind.name for existing in checks):
            raise ApiError(422, "duplicate_check", f"check {kind.name!r} is listed twice")
        checks.append({"kind": kind.name, "params": params.model_dump(mode="json")})
    return checks


def _same_request(audit: Audit, body: AuditCreate, checks: list[dict[str, Any]]) -> bool:
    return (audit.model_uri, audit.dataset_uri, audit.checks) == (
        body.model.uri if body.model else None,
        body.dataset.uri,
        checks,
    )


def _refuse_different(existing: Audit, body: AuditCreate, checks: list[dict[str, Any]]) -> None:
    if not _same_request(existing, body, checks):
        raise ApiError(
            409,
            "idempotency_conflict",
            "this idempotency_key was used for a different request",
            {"audit_id": existing.id},
        )


def _hold_key(session: Session, key: ApiKey) -> None:
    """Serialise one key's submits: a write to its row takes PostgreSQL's row lock (SQLite's
    write lock), held to the commit, so the count below and the insert after it are atomic."""
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=utcnow()))


def _refuse_over_active_limit(session: Session, settings: Settings, key: ApiKey) -> None:
    active = session.scalar(
        select(func.count())
        .select_from(Audit)
        .where(Audit.created_by == key.id, Audit.status.in_(AuditStatus.ACTIVE))
    )
    limit = settings.max_active_audits_per_key
    if active >= limit:
        session.rollback()  # the key's hold goes with it
        raise ApiError(
            429,
            "too_many_active_audits",
            f"this key has {active} queued or running audits; the limit is {limit} "
            "(MEMAUDIT_MAX_ACTIVE_AUDITS_PER_KEY): wait for some to finish or cancel them",
            {"limit": "max_active_audits_per_key", "value": active},
        )


def _recorded_submission(audit: Audit) -> dict[str, Any]:
    """What the audit log keeps of a submission: what is audited, on what, by which checks."""
    return {
        "model_uri": audit.model_uri,
        "dataset_uri": audit.dataset_uri,
        "checks": [entry["kind"] for entry in audit.checks],
        "team": audit.team_id,
        "policy_id": audit.policy_id,
    }


def submit_audit(
    session: Session,
    settings: Settings,
    body: AuditCreate,
    owner: Owner,
    catalog: Catalog,
    policy_id: str | None = None,
) -> tuple[Audit, bool]:
    """Validate everything checkable now and write the audit, owned by the owner's team, with
    its shards.

    Returns (audit, created). Nothing is written when validation fails.
    """
    key = owner.key
    if body.callback_url is not None:
        try:
            check_url(
                str(body.callback_url), settings.callback_hosts, settings.callback_allow_private
            )
        except UrlNotAllowed as exc:
            raise ApiError(422, "callback_url_not_allowed", str(exc)) from None
    model_uri = body.model.uri if body.model is not None else None
    if model_uri is None:
        model_kind: str | None = NO_MODEL  # only kinds that run without a model pass below
        if body.reference_model is not None:
            raise ApiError(
                422, "model_required", "a reference_model needs a model to compare it with"
            )
    else:
        model_kind = _model_kind(settings, owner.grants, model_uri, "model")
    if body.reference_model is not None:
        _model_kind(settings, owner.grants, body.reference_model.uri, "reference_model")
    dataset = resolve_dataset(session, settings, body.dataset.uri, owner)
    if dataset.n_records == 0:
        raise ApiError(422, "empty_dataset", f"dataset {body.dataset.uri} has no records")
    checks = validate_checks(
        body.checks,
        dataset,
        catalog=catalog,
        has_reference=body.reference_model is not None,
        model_kind=model_kind,
        settings=settings,
        model_uri=model_uri,
        owner=owner,
        session=session,
        reference_uri=body.reference_model.uri if body.reference_model else None,
    )

    if key is not None:
        _hold_key(session, key)  # from here to the commit, this key's submits go one at a time
    if body.idempotency_key:
        existing = find_idempotent(session, owner.team_id, body.idempotency_key)
        if existing is not None:
            session.rollback()
            _refuse_different(existing, body, checks)
            return existing, False
    if key is not None:
        _refuse_over_active_limit(session, settings, key)
    family, version = (
        family_and_version(model_uri, body.labels) if model_uri is not None else (None, None)
    )
    audit = Audit(
        team_id=owner.team_id,
        model_uri=model_uri,
        model_family=family,
        model_version=version,
        reference_model_uri=body.reference_model.uri if body.reference_model else None,
        dataset_uri=dataset.uri,
        dataset_sha256=dataset.sha256,
        n_samples=dataset.n_records,
        checks=checks,
        labels=body.labels,
        callback_url=str(body.callback_url) if body.callback_url else None,
        idempotency_key=body.idempotency_key,
        created_by=key.id if key else None,
        policy_id=policy_id,
        summary={},
        provenance={},
    )
    session.add(audit)
    session.flush()
    record(session, "audit.created", "audit", audit.id, _recorded_submission(audit))
    now = utcnow()
    for index, start in enumerate(range(0, dataset.n_records, settings.shard_size)):
        stop = min(start + settings.shard_size, dataset.n_records)
        session.add(
            Shard(audit_id=audit.id, index=index, start=start, stop=stop, enqueued_at=now, info={})
        )
    try:
        session.commit()
    except IntegrityError:  # the same idempotency key, committed by a request beside this one
        session.rollback()
        existing = find_idempotent(session, owner.team_id, body.idempotency_key or "")
        if existing is None:
            raise
        _refuse_different(existing, body, checks)
        return existing, False
    return audit, True


def model_queue(settings: Settings, model_uri: str | None) -> str:
    """The queue an audit's shards go to: the large-model queue (served by workers that own
    several GPUs) when one is set and the model's loaded size (read from its checked weight
    headers, `ModelSpec.loaded_bytes`) reaches its threshold; else the default. A registry
    model not downloaded yet has no size here: default queue."""
    if not settings.large_model_queue or not model_uri or not model_uri.startswith("path:"):
        return settings.queue
    try:
        spec = resolve_model(
            model_uri,
            settings.model_root_paths,
            allow_pickle=settings.allow_pickle_weights,
            allow_torchscript=settings.allow_torchscript,
            rules=settings.file_rules,
        )
        size = spec.loaded_bytes or 0
    except (ModelError, OSError):  # gone since submit: the worker fails it, saying why
        return settings.queue
    return settings.large_model_queue if size >= settings.large_model_min_bytes else settings.queue


def enqueue_audit(session: Session, celery: Celery, settings: Settings, audit: Audit) -> None:
    """Send one message per queued shard; a shard whose message fails waits for the reaper."""
    shard_ids = session.scalars(
        select(Shard.id).where(Shard.audit_id == audit.id, Shard.status == ShardStatus.QUEUED)
    ).all()
    queue = model_queue(settings, audit.model_uri)
    unsent = []
    for shard_id in shard_ids:
        try:
            celery.send_task(RUN_SHARD, args=[shard_id], queue=queue)
        except Exception:  # broker down: the row is the truth, the reaper re-sends it
            log.exception("could not enqueue shard %s; the reaper will re-send it", shard_id)
            unsent.append(shard_id)
    if unsent:
        session.execute(update(Shard).where(Shard.id.in_(unsent)).values(enqueued_at=None))
        session.commit()


def find_idempotent(session: Session, team_id: str, idempotency_key: str) -> Audit | None:
    """The team's audit submitted with this idempotency key (keys are per team)."""
    return session.scalar(
        select(Audit).where(Audit.team_id == team_id, Audit.idempotency_key == idempotency_key)
    )
