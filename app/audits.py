"""Audit submission, queries and cancellation: the plain functions behind the audit routes."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from celery import Celery
from pydantic import ValidationError
from sqlalchemy import Row, and_, func, literal, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, defer

from app.config import Settings
from app.confinement import PathRefused, pin
from app.datasets import limit_error
from app.db import Database, utcnow
from app.errors import ApiError
from app.model_identity import family_and_version
from app.models import (
    ApiKey,
    Audit,
    AuditStatus,
    CallbackDelivery,
    Dataset,
    SampleResult,
    Shard,
    ShardStatus,
)
from app.outbound import UrlNotAllowed, check_url
from app.schemas import AuditCreate, AuditPublic, CheckRequest, Progress
from app.tenancy import Grants, NotGranted, Owner, can_see, check_model_grant, visible
from worker.check_types import SubmitContext
from worker.checks import UnknownCheck, get_check, parse_checks
from worker.loaders import chat_endpoints, hf_models, mlflow_models
from worker.loaders.datasets import DatasetError, DatasetLimitExceeded, inspect_dataset_file
from worker.loaders.models import ModelError, resolve_model
from worker.task_names import DELIVER_CALLBACK, RUN_SHARD, WRITE_BACK_TO_REGISTRY

log = logging.getLogger(__name__)


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
    has_reference: bool,
    model_kind: str | None,
    settings: Settings | None = None,
    model_uri: str | None = None,
    owner: Owner | None = None,
    session: Session | None = None,
) -> list[dict[str, Any]]:
    """Each check's params through the registry; the model kind too when it is known, and the
    models and datasets params name, against the owner's grants."""
    checks = []
    for position, request in enumerate(requests):
        try:
            kind = get_check(request.kind)
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
            )
        try:
            completed = kind.validate(params, context)
            params = completed if completed is not None else params
        except ValueError as exc:
            raise ApiError(422, "invalid_params", f"check {kind.name!r}: {exc}") from None
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
        body.model.uri,
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


def submit_audit(
    session: Session,
    settings: Settings,
    body: AuditCreate,
    owner: Owner,
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
    model_kind = _model_kind(settings, owner.grants, body.model.uri, "model")
    if body.reference_model is not None:
        _model_kind(settings, owner.grants, body.reference_model.uri, "reference_model")
    dataset = resolve_dataset(session, settings, body.dataset.uri, owner)
    if dataset.n_records == 0:
        raise ApiError(422, "empty_dataset", f"dataset {body.dataset.uri} has no records")
    checks = validate_checks(
        body.checks,
        dataset,
        has_reference=body.reference_model is not None,
        model_kind=model_kind,
        settings=settings,
        model_uri=body.model.uri,
        owner=owner,
        session=session,
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
    family, version = family_and_version(body.model.uri, body.labels)
    audit = Audit(
        team_id=owner.team_id,
        model_uri=body.model.uri,
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


def enqueue_audit(session: Session, celery: Celery, settings: Settings, audit: Audit) -> None:
    """Send one message per queued shard; a shard whose message fails waits for the reaper."""
    shard_ids = session.scalars(
        select(Shard.id).where(Shard.audit_id == audit.id, Shard.status == ShardStatus.QUEUED)
    ).all()
    unsent = []
    for shard_id in shard_ids:
        try:
            celery.send_task(RUN_SHARD, args=[shard_id], queue=settings.queue)
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


def get_audit(session: Session, audit_id: str, key: ApiKey) -> Audit:
    """An audit the key may see; another team's is as missing as one that never was."""
    audit = session.get(Audit, audit_id)
    if audit is None or not can_see(key, audit.team_id):
        raise ApiError(404, "not_found", f"no audit {audit_id!r}")
    return audit


def progress_of(session: Session, audit: Audit) -> Progress:
    if audit.status == AuditStatus.SUCCEEDED:
        return Progress(done=audit.n_samples, total=audit.n_samples)
    done = session.scalar(
        select(func.coalesce(func.sum(Shard.done), 0)).where(Shard.audit_id == audit.id)
    )
    return Progress(done=int(done), total=audit.n_samples)


def to_public(session: Session, settings: Settings, audit: Audit) -> AuditPublic:
    return AuditPublic(
        id=audit.id,
        status=audit.status,
        progress=progress_of(session, audit),
        error=audit.error,
        model_uri=audit.model_uri,
        model_family=audit.model_family,
        model_version=audit.model_version,
        reference_model_uri=audit.reference_model_uri,
        dataset_uri=audit.dataset_uri,
        checks=audit.checks,
        labels=audit.labels or {},
        summary=audit.summary or {},
        provenance=audit.provenance or {},
        policy_id=audit.policy_id,
        verdict=audit.verdict,
        created_by=audit.created_by,
        cancel_requested=audit.cancel_requested,
        created_at=audit.created_at,
        started_at=audit.started_at,
        finished_at=audit.finished_at,
        report_url=f"{settings.public_url.rstrip('/')}/audits/{audit.id}",
    )


def list_audits(
    session: Session,
    key: ApiKey,
    *,
    status: str | None,
    model: str | None,
    label: str | None,
    limit: int,
    offset: int,
    family: str | None = None,
) -> tuple[list[Audit], int]:
    query = visible(select(Audit), Audit.team_id, key)
    if family:
        query = query.where(Audit.model_family == family)
    if status:
        query = query.where(Audit.status == status)
    if model:
        query = query.where(Audit.model_uri == model)
    if label:
        name, sep, value = label.partition(":")
        if not sep:
            raise ApiError(422, "invalid_filter", "label filter must be name:value")
        query = query.where(Audit.labels[name].as_string() == value)
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(
        query.order_by(Audit.created_at.desc(), Audit.id).limit(limit).offset(offset)
    ).all()
    return list(rows), int(count)


def list_callbacks(session: Session, audit: Audit) -> list[CallbackDelivery]:
    return list(
        session.scalars(
            select(CallbackDelivery)
            .where(CallbackDelivery.audit_id == audit.id)
            .order_by(CallbackDelivery.created_at, CallbackDelivery.attempt)
        )
    )


def announce_end(celery: Celery, settings: Settings, audit: Audit) -> None:
    """What the worker does when an audit ends, for one that ended in the API (a
    cancellation): its callback, and its registry tags."""
    tasks = [DELIVER_CALLBACK] if audit.callback_url else []
    if audit.model_uri.startswith(mlflow_models.PREFIX):
        tasks.append(WRITE_BACK_TO_REGISTRY)
    for task in tasks:
        try:
            celery.send_task(task, args=[audit.id], queue=settings.queue)
        except Exception:  # broker down: the cancellation stands; the loss is logged
            log.exception("could not queue %s for audit %s", task, audit.id)


def cancel_audit(session: Session, audit: Audit) -> Audit:
    """Record the cancellation; running workers see it between batches and stop."""
    if audit.status not in AuditStatus.ACTIVE:
        raise ApiError(409, "not_cancellable", f"audit {audit.id} is already {audit.status}")
    now = utcnow()
    session.execute(
        update(Audit)
        .where(Audit.id == audit.id, Audit.status.in_(AuditStatus.ACTIVE))
        .values(cancel_requested=True, status=AuditStatus.CANCELLED, finished_at=now)
    )
    session.execute(
        update(Shard)
        .where(Shard.audit_id == audit.id, Shard.status == ShardStatus.QUEUED)
        .values(status=ShardStatus.CANCELLED)
    )
    session.commit()
    session.refresh(audit)
    return audit


def get_sample(session: Session, audit: Audit, sample_index: int) -> list[SampleResult]:
    """Every check's row for one record, with its token view."""
    rows = session.scalars(
        select(SampleResult)
        .where(
            SampleResult.audit_id == audit.id,
            # Naming the checks lets the (audit_id, check, sample_index) key find the rows.
            SampleResult.check.in_([entry["kind"] for entry in audit.checks]),
            SampleResult.sample_index == sample_index,
        )
        .order_by(SampleResult.check)
    ).all()
    if not rows:
        raise ApiError(404, "not_found", f"audit {audit.id} has no sample {sample_index}")
    return list(rows)


def require_check(audit: Audit, check: str | None) -> None:
    kinds = [entry["kind"] for entry in audit.checks]
    if check is not None and check not in kinds:
        raise ApiError(422, "unknown_check", f"audit has no check {check!r}; it has {kinds}")


def iter_sample_pages(
    db: Database, audit_id: str, check: str | None, page_size: int = 2000
) -> Iterator[list[Row]]:
    """Every row in (check, sample_index) order, a page per short session: an export of a
    million rows streams in bounded memory and holds no transaction open while it is sent."""
    after: tuple[str, int] | None = None
    while True:
        conditions = [SampleResult.audit_id == audit_id]
        if check is not None:
            conditions.append(SampleResult.check == check)
        if after is not None:
            conditions.append(tuple_(SampleResult.check, SampleResult.sample_index) > after)
        with db.session() as session:
            rows = session.execute(
                select(
                    SampleResult.check,
                    SampleResult.sample_index,
                    SampleResult.sample_id,
                    SampleResult.values,
                )
                .where(*conditions)
                .order_by(SampleResult.check, SampleResult.sample_index)
                .limit(page_size)
            ).all()
        if not rows:
            return
        yield list(rows)
        after = (rows[-1].check, rows[-1].sample_index)


def _sort_column(audit: Audit, check: str | None, order_by: str) -> Any:
    """The column or expression to order by: an indexed one wherever the table can sort."""
    if order_by == "sample_index":
        return SampleResult.sample_index
    if order_by == "score":
        return SampleResult.score
    if check is not None:
        kind = get_check(check)
        params = next(p for k, p in parse_checks(audit.checks) if k.name == check)
        slot = kind.sort_slot(params, order_by)
        if slot is not None:
            return getattr(SampleResult, f"sort_{slot}")
        if kind.sortable_metric(order_by):  # any other numeric field: correct, not indexed
            path = tuple(order_by.split("."))
            return SampleResult.values[path if len(path) > 1 else path[0]].as_float()
    raise ApiError(
        422,
        "invalid_order",
        "order_by must be sample_index, score or, with check=, one of its numeric per-sample "
        "fields; a dotted path such as log10_pz.greedy reaches into nested values",
    )


def _cached_count(audit: Audit, check: str | None, member: bool | None) -> int | None:
    """The count finalize stored for a finished audit; None when it must be counted."""
    counts = audit.row_counts or {}
    label = "all" if member is None else str(member).lower()
    if audit.status != AuditStatus.SUCCEEDED or not counts:
        return None
    checks = [check] if check is not None else [entry["kind"] for entry in audit.checks]
    if any(name not in counts for name in checks):
        return None
    return sum(counts[name][label] for name in checks)


def _page_keys(
    conditions: list[Any], column: Any, desc: bool, searching: bool, limit: int, offset: int
) -> Any:
    """The query for one page's (check, sample_index), ordered with ties broken by index."""
    keyed = select(SampleResult.check, SampleResult.sample_index, column.label("sort_key"))
    source: Any = keyed.where(*conditions)
    if searching:
        # Matches are gathered first, from the narrow (audit, check, sample_id, score) index,
        # and only they are sorted; otherwise the planner walks the sort index over every row.
        source = source.cte("matches").prefix_with("MATERIALIZED")
    else:
        source = source.subquery("rows")
    direction = (lambda c: c.desc()) if desc else (lambda c: c.asc())
    first = direction(source.c.sort_key)
    if not isinstance(column, InstrumentedAttribute):  # a JSON field may be missing: last
        first = first.nulls_last()
    # Ties go the same way as the sort, so one index scan (forward or backward) serves it.
    # A search scans its matches anyway, so it counts them in passing; a window count on the
    # plain path would read every row the LIMIT lets the index skip.
    total = func.count().over() if searching else literal(None)
    return (
        select(source.c.check, source.c.sample_index, total.label("total"))
        .order_by(first, direction(source.c.sample_index), source.c.check)
        .limit(limit)
        .offset(offset)
    )


def list_samples(
    session: Session,
    audit: Audit,
    *,
    check: str | None,
    order_by: str,
    desc: bool,
    limit: int,
    offset: int,
    member: bool | None = None,
    search: str | None = None,
) -> tuple[list[SampleResult], int]:
    """One page of per-sample rows, sorted, filtered and paged in the database.

    The page's keys are found first from an index alone (even deep offsets skip index entries,
    not rows), then only those rows are read.
    """
    require_check(audit, check)
    conditions = [SampleResult.audit_id == audit.id]
    if check is not None:
        conditions.append(SampleResult.check == check)
    if member is not None:
        conditions.append(SampleResult.member.is_(member))
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(SampleResult.sample_id.like(f"%{escaped}%", escape="\\"))
    column = _sort_column(audit, check, order_by)
    keys = session.execute(_page_keys(conditions, column, desc, bool(search), limit, offset)).all()
    count = _cached_count(audit, check, member) if not search else None
    if count is None:
        # The page query counted its matches too (a window count); past the last page it
        # returned no row to carry that count, so count apart.
        count = keys[0].total if keys else None
    if count is None:
        count = session.scalar(select(func.count()).select_from(SampleResult).where(*conditions))
    if not keys:
        return [], int(count or 0)
    by_check: dict[str, list[int]] = {}
    for key in keys:
        by_check.setdefault(key.check, []).append(key.sample_index)
    # Per check an IN over sample indexes: point lookups in the primary key.
    found = session.scalars(
        select(SampleResult)
        .where(
            SampleResult.audit_id == audit.id,
            or_(
                *[
                    and_(SampleResult.check == name, SampleResult.sample_index.in_(indexes))
                    for name, indexes in by_check.items()
                ]
            ),
        )
        .options(defer(SampleResult.detail))
    ).all()
    by_key = {(row.check, row.sample_index): row for row in found}
    return [by_key[(key.check, key.sample_index)] for key in keys], int(count or 0)
