"""The audit log's writing side: who is acting in a session, and one entry per change.

An entry is added to the session that makes the change, before that session commits, so the
change and its entry land in one transaction: neither is ever stored without the other. The
actor is bound to the session once, where it is known: the request's authentication (an API
key, or a person signed in through the identity provider, who is an ApiKey row of its own kind),
the admin CLI, or a policy starting an audit for a registry event. Code that changes things on a
session nobody bound (a script, a test fixture working on the database directly) is recorded as
`system`, so no change goes unrecorded.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.logs import current_context
from core.models import ApiKey, AuditLogEntry, AuditPolicy

ACTOR = "memaudit.audit_log.actor"  # the key in Session.info


@dataclass(frozen=True)
class Actor:
    """Who acts, as recorded: copied into each entry, so it outlives a revoked or moved key."""

    kind: str  # key (or the ApiKey's own kind), cli, policy, system
    name: str
    id: str | None = None
    team_id: str | None = None
    client: str | None = None  # the address the request came from


SYSTEM = Actor(kind="system", name="direct database session")


def key_actor(key: ApiKey, client: str | None = None) -> Actor:
    # `kind` tells a machine's key from a person signed in through the identity provider.
    return Actor(kind=key.kind, name=key.name, id=key.id, team_id=key.team_id, client=client)


def cli_actor() -> Actor:
    """The operator at the host: the OS account that ran `memaudit`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown user"
    return Actor(kind="cli", name=user)


def policy_actor(policy: AuditPolicy) -> Actor:
    """A policy that starts an audit of a version a registry announced."""
    return Actor(kind="policy", name=policy.name, id=policy.id, team_id=policy.team_id)


def bind_actor(session: Session, actor: Actor) -> None:
    """Every change made through this session from now on is recorded as this actor's."""
    session.info[ACTOR] = actor


def bound_actor(session: Session) -> Actor | None:
    return session.info.get(ACTOR)


@contextmanager
def acting_as(session: Session, actor: Actor) -> Iterator[None]:
    """Bind an actor for a block, and put back whoever was bound before."""
    before = session.info.get(ACTOR)
    session.info[ACTOR] = actor
    try:
        yield
    finally:
        if before is None:
            session.info.pop(ACTOR, None)
        else:
            session.info[ACTOR] = before


def record(
    session: Session,
    action: str,
    target_type: str,
    target_id: str,
    detail: Mapping[str, Any] | None = None,
) -> AuditLogEntry:
    """Add the entry for a change to the session making it; the caller's commit stores both.

    `detail` says what changed, never a secret: no key, hash or token belongs in it."""
    actor = bound_actor(session) or SYSTEM
    entry = AuditLogEntry(
        actor_id=actor.id,
        actor_name=actor.name[:200],
        actor_kind=actor.kind,
        actor_team_id=actor.team_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        detail=dict(detail or {}),
        request_id=current_context().get("request_id"),
        client=actor.client,
    )
    session.add(entry)
    return entry


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields whose value differs, each as {from, to}: what an `...updated` entry holds."""
    return {
        name: {"from": before.get(name), "to": value}
        for name, value in after.items()
        if before.get(name) != value
    }
