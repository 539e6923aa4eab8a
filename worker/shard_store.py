"""Every state change of a shard or an audit, as atomic statements on the database.

Claims are one conditional UPDATE, so two workers handed the same shard cannot both run it;
progress and results are written in one transaction, so they always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from core.check_kinds import CheckKind
from core.db import Database, upsert_insert, utcnow
from core.deployment import record_worker_host
from core.models import (
    NO_VALUE,
    SORT_SLOTS,
    ApiKey,
    Audit,
    AuditStatus,
    Dataset,
    SampleResult,
    Shard,
    ShardStatus,
    Split,
)
from core.tenancy import Grants, submitter_grants


class LeaseLost(RuntimeError):
    """Another worker took the shard over (our lease expired); stop without writing."""


class ShardGaveUp(RuntimeError):
    """The shard used up its attempts; the audit has been failed with the last error."""

    def __init__(self, audit_id: str) -> None:
        super().__init__(audit_id)
        self.audit_id = audit_id


class AuditStopped(RuntimeError):
    """The audit was cancelled or failed elsewhere; stop between batches."""


@dataclass(frozen=True)
class Claim:
    shard_id: str
    owner: str
    audit_id: str
    start: int
    stop: int
    attempt: int


def claim_shard(
    db: Database, shard_id: str, owner: str, lease_seconds: int, max_attempts: int
) -> Claim | None:
    """Take the shard if it is queued or its lease ran out; None if someone else owns it or
    the audit has ended. Raises ShardGaveUp when this claim would exceed max_attempts."""
    now = utcnow()
    with db.session() as session:
        claimed = session.execute(
            update(Shard)
            .where(
                Shard.id == shard_id,
                or_(
                    Shard.status == ShardStatus.QUEUED,
                    and_(Shard.status == ShardStatus.RUNNING, Shard.lease_expires_at < now),
                ),
            )
            .values(
                status=ShardStatus.RUNNING,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=Shard.attempts + 1,
            )
        ).rowcount
        if claimed != 1:
            return None
        shard = session.get(Shard, shard_id)
        audit = session.get(Audit, shard.audit_id)
        if audit.status not in AuditStatus.ACTIVE or audit.cancel_requested:
            shard.status, shard.lease_owner = ShardStatus.CANCELLED, None
            return None
        if shard.attempts <= max_attempts:
            session.execute(
                update(Audit)
                .where(Audit.id == audit.id, Audit.status == AuditStatus.QUEUED)
                .values(status=AuditStatus.RUNNING, started_at=now)
            )
            record_worker_host(session)
            return Claim(shard.id, owner, audit.id, shard.start, shard.stop, shard.attempts)
        message = f"shard {shard.index} gave up after {max_attempts} attempts"
        if shard.error:
            message += f"; last error: {shard.error}"
        _fail(session, shard, audit.id, message)
    raise ShardGaveUp(audit.id)  # after the commit, so the failure is stored


def load_audit(db: Database, audit_id: str) -> Audit:
    with db.session() as session:
        return session.get(Audit, audit_id)


def audit_grants(db: Database, audit: Audit) -> Grants:
    """The grants the audit runs under, read now: a grant withdrawn since submit is gone."""
    with db.session() as session:
        return submitter_grants(session, audit.team_id, audit.created_by)


def upload_sha256(db: Database, audit: Audit | Split, dataset_id: str) -> str | None:
    """The content of an upload the audit (or split) may read: its team's, or any when an admin
    key submitted it (None: no such record it may read)."""
    with db.session() as session:
        row = session.get(Dataset, dataset_id)
        if row is None:
            return None
        if row.team_id == audit.team_id:
            return row.sha256
        key = session.get(ApiKey, audit.created_by) if audit.created_by else None
        return row.sha256 if key is not None and key.is_admin else None


def result_row(
    audit_id: str,
    kind: CheckKind,
    params: Any,
    sample_index: int,
    sample_id: str,
    values: dict[str, Any],
) -> dict[str, Any]:
    """One sample_results row: the values, the token view apart, and the indexed sort keys."""
    values = dict(values)
    detail = values.pop("detail", None)
    member = values.get("member")
    score = kind.score_of(values, params)
    sort_keys = {
        f"sort_{slot}": NO_VALUE if value is None else value
        for slot, value in zip(SORT_SLOTS, kind.sort_values(values, params), strict=True)
    }
    return {
        "audit_id": audit_id,
        "check": kind.name,
        "sample_index": sample_index,
        "sample_id": sample_id,
        "values_json": values,
        "detail": detail,
        "score": NO_VALUE if score is None else score,
        "member": member if isinstance(member, bool) else None,
        **sort_keys,
    }


@cache
def upsert_statement(dialect: str) -> Insert:
    """One statement per dialect, built and compiled once: a batch's rows go with it as
    executemany parameters, which SQLAlchemy sends as multi-row INSERTs (insertmanyvalues).
    Building a new multi-VALUES statement per batch spent more time compiling than writing."""
    statement = upsert_insert(dialect)(SampleResult.__table__)
    return statement.on_conflict_do_update(
        index_elements=["audit_id", "check", "sample_index"],
        set_={
            name: statement.excluded[name]
            for name in (
                "sample_id",
                "values_json",
                "detail",
                "score",
                "member",
                *(f"sort_{slot}" for slot in SORT_SLOTS),
            )
        },
    )


def upsert_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or overwrite rows keyed by (audit_id, check, sample_index): a re-run of a shard
    writes the same rows again, never more."""
    if rows:
        connection = session.connection()
        connection.execute(upsert_statement(connection.dialect.name), list(rows))


def _ensure_running(session: Session, claim: Claim) -> None:
    status, cancel = session.execute(
        select(Audit.status, Audit.cancel_requested).where(Audit.id == claim.audit_id)
    ).one()
    if status not in AuditStatus.ACTIVE or cancel:
        raise AuditStopped(status)


def check_running(db: Database, claim: Claim) -> None:
    """Raise AuditStopped if the audit was cancelled or failed elsewhere (one cheap read)."""
    with db.session() as session:
        _ensure_running(session, claim)


def write_batch(
    db: Database, claim: Claim, rows: Sequence[dict[str, Any]], done: int, lease_seconds: int
) -> None:
    """Store rows and progress, and renew the lease, in one transaction."""
    with db.session() as session:
        _ensure_running(session, claim)
        renewed = session.execute(
            update(Shard)
            .where(
                Shard.id == claim.shard_id,
                Shard.lease_owner == claim.owner,
                Shard.status == ShardStatus.RUNNING,
            )
            .values(done=done, lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        ).rowcount
        if renewed != 1:
            raise LeaseLost(claim.shard_id)
        upsert_rows(session, rows)


def renew_lease(db: Database, claim: Claim, lease_seconds: int) -> bool:
    """Extend our lease; False when it is no longer ours (another worker took the shard)."""
    with db.session() as session:
        return (
            session.execute(
                update(Shard)
                .where(
                    Shard.id == claim.shard_id,
                    Shard.lease_owner == claim.owner,
                    Shard.status == ShardStatus.RUNNING,
                )
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
            ).rowcount
            == 1
        )


def complete_shard(db: Database, claim: Claim, info: dict[str, Any]) -> bool:
    """Mark the shard done; True when every shard of the audit is done (time to finalize)."""
    with db.session() as session:
        updated = session.execute(
            update(Shard)
            .where(Shard.id == claim.shard_id, Shard.lease_owner == claim.owner)
            .values(
                status=ShardStatus.SUCCEEDED,
                lease_owner=None,
                lease_expires_at=None,
                info=info,
                error=None,
            )
        ).rowcount
        if updated != 1:
            raise LeaseLost(claim.shard_id)
    # Counted after our commit: whichever shard commits last is sure to see all the others.
    return remaining_shards(db, claim.audit_id) == 0


def remaining_shards(db: Database, audit_id: str) -> int:
    with db.session() as session:
        return session.scalar(
            select(func.count())
            .select_from(Shard)
            .where(Shard.audit_id == audit_id, Shard.status != ShardStatus.SUCCEEDED)
        )


def _fail(session: Session, shard: Shard, audit_id: str, message: str) -> None:
    shard.status, shard.error, shard.lease_owner = ShardStatus.FAILED, message, None
    session.execute(
        update(Audit)
        .where(Audit.id == audit_id, Audit.status.in_(AuditStatus.ACTIVE))
        .values(status=AuditStatus.FAILED, error=message, finished_at=utcnow())
    )


def fail_shard(db: Database, claim: Claim, message: str) -> None:
    """A permanent error (bad data, unusable model): the audit fails with the reason."""
    with db.session() as session:
        shard = session.get(Shard, claim.shard_id)
        _fail(session, shard, claim.audit_id, message)


def stop_shard(db: Database, claim: Claim) -> None:
    with db.session() as session:
        session.execute(
            update(Shard)
            .where(Shard.id == claim.shard_id, Shard.lease_owner == claim.owner)
            .values(status=ShardStatus.CANCELLED, lease_owner=None, lease_expires_at=None)
        )


def release_shard(db: Database, claim: Claim, message: str) -> None:
    """A transient error: put the shard back in the queue for another try."""
    with db.session() as session:
        session.execute(
            update(Shard)
            .where(Shard.id == claim.shard_id, Shard.lease_owner == claim.owner)
            .values(
                status=ShardStatus.QUEUED,
                lease_owner=None,
                lease_expires_at=None,
                error=message,
                enqueued_at=utcnow(),
            )
        )


def shard_models(db: Database, shard_ids: Sequence[str]) -> dict[str, str | None]:
    """Each shard's audited model URI (None for a model-free audit): what routes it."""
    with db.session() as session:
        rows = session.execute(
            select(Shard.id, Audit.model_uri)
            .join(Audit, Audit.id == Shard.audit_id)
            .where(Shard.id.in_(list(shard_ids)))
        ).all()
    return {shard_id: uri for shard_id, uri in rows}


@dataclass(frozen=True)
class ReapResult:
    shards_to_enqueue: list[str]
    audits_to_finalize: list[str]


def reap(db: Database, orphan_after_seconds: int) -> ReapResult:
    """Find work that a crash or a lost message left behind."""
    now = utcnow()
    with db.session() as session:
        expired = session.scalars(
            select(Shard.id).where(
                Shard.status == ShardStatus.RUNNING, Shard.lease_expires_at < now
            )
        ).all()
        orphaned = session.scalars(
            select(Shard.id).where(
                Shard.status == ShardStatus.QUEUED,
                or_(
                    Shard.enqueued_at.is_(None),
                    Shard.enqueued_at < now - timedelta(seconds=orphan_after_seconds),
                ),
            )
        ).all()
        resend = [*expired, *orphaned]
        if resend:
            session.execute(update(Shard).where(Shard.id.in_(resend)).values(enqueued_at=now))
        unfinished = select(Shard.audit_id).where(Shard.status != ShardStatus.SUCCEEDED)
        finalize = session.scalars(
            select(Audit.id).where(Audit.status == AuditStatus.RUNNING, Audit.id.not_in(unfinished))
        ).all()
    return ReapResult(list(resend), list(finalize))
