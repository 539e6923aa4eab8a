"""Creating and checking API keys against the database."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.security import KEY_PREFIX_LEN, SCOPES, generate_key, key_matches
from core.audit_log import record
from core.db import utcnow
from core.models import DEFAULT_TEAM, ApiKey, KeyKind


def create_key(session: Session, name: str, scope: str, team_id: str = DEFAULT_TEAM) -> str:
    """Store a new key's hash and return the key itself: the only time it is ever seen."""
    return create_key_row(session, name, scope, team_id)[0]


def create_key_row(
    session: Session, name: str, scope: str, team_id: str = DEFAULT_TEAM
) -> tuple[str, ApiKey]:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    key, prefix, key_hash = generate_key()
    row = ApiKey(name=name, prefix=prefix, key_hash=key_hash, scope=scope, team_id=team_id)
    session.add(row)
    session.flush()
    record(session, "key.created", "key", row.id, {"name": name, "scope": scope, "team": team_id})
    return key, row


# last_used_at is kept to the minute: writing it on every request made every read a writer
# (SQLite's one write lock, a PostgreSQL row lock on the key) held to the end of the request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def authenticate(session: Session, key: str) -> ApiKey | None:
    """The key's row; a person's principal (kind `user`) is never one, whatever is presented."""
    row = session.scalar(
        select(ApiKey).where(ApiKey.prefix == key[:KEY_PREFIX_LEN], ApiKey.kind == KeyKind.KEY)
    )
    if row is None or row.revoked_at is not None or not key_matches(key, row.key_hash):
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        session.commit()  # at once: the request does not keep the lock
    return row


def count_active_keys(session: Session, scope: str | None = None) -> int:
    """Keys not revoked, of one scope when given."""
    query = select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
    if scope is not None:
        query = query.where(ApiKey.scope == scope)
    return session.scalar(query)


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.name)))


def find_key(session: Session, key_id_or_prefix: str) -> ApiKey:
    row = session.scalar(
        select(ApiKey).where((ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix))
    )
    if row is None:
        raise LookupError(f"no key with id or prefix {key_id_or_prefix!r}")
    return row


def revoke_key(session: Session, key_id_or_prefix: str) -> ApiKey:
    """Revoke by id or by the key's visible prefix; a revoked key stops working at once, and
    the browser sessions made with it end with it."""
    row = find_key(session, key_id_or_prefix)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record(session, "key.revoked", "key", row.id, {"name": row.name, "scope": row.scope})
    return row
