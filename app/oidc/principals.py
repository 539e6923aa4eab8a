"""A person who signed in through the identity provider, kept as an ApiKey of kind `user`:
ownership, team confinement, scopes, sessions and revocation then work as for a key.

The row has no usable key: its hash field holds no SHA-256 digest (so no presented key can
match it) and authentication refuses the kind outright. Its scope and team are the claims'
at each sign-in. Revoking it ends the person's sessions and refuses their later sign-ins,
whatever the identity provider says: it is how an administrator locks a person out here.
"""

from __future__ import annotations

import secrets

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.oidc.claims import Grant, SignInRefused
from core.audit_log import Actor, acting_as, changes, record
from core.config import SCOPE_NAMES
from core.db import utcnow
from core.models import DEFAULT_TEAM, ApiKey, BrowserSession, KeyKind, Team

NO_KEY_HASH = "none"  # never a hex SHA-256 digest: no key hashes to it
SUBJECT_CHARS = 500  # api_keys.subject's length
USER_PREFIX = "oidc_"  # keys begin `ma_`: a person's visible prefix never looks like a key's


def subject_of(issuer: str, sub: str) -> str:
    """A person's identity: `sub` is unique only within its issuer."""
    return f"{issuer.rstrip('/')} {sub}"


def verified_email(claims: dict) -> str | None:
    """The `email` claim only when the provider vouches for it (`email_verified`): many let a
    person type any address, and an unverified one must not pass for someone else's."""
    email, verified = claims.get("email"), claims.get("email_verified")
    # Some providers (Cognito) send the flag as the string "true".
    if isinstance(email, str) and email and verified in (True, "true"):
        return email[:320]
    return None


def display_name(claims: dict) -> str:
    """The name listings and the audit log show: a verified e-mail address, or else the
    person's own name with the provider's subject beside it (a name is self-chosen: the
    subject says who it really is)."""
    if email := verified_email(claims):
        return email[:200]
    sub = str(claims.get("sub", ""))
    for claim in ("name", "preferred_username"):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            return f"{value.strip()[:80]} (sub {sub})"[:200]
    return f"sub {sub}"[:200]


def grantable_team_names(session: Session) -> list[str]:
    """The teams a group may grant: every team but the default one, whose grants are `*`
    (everything of 0.1 lives there); a person joins it only by an administrator's hand."""
    return list(session.scalars(select(Team.name).where(Team.id != DEFAULT_TEAM)))


def _person_row(
    session: Session, subject: str, claims: dict, grant: Grant, team: Team
) -> tuple[ApiKey, bool]:
    """(the person's row, whether this sign-in made it). Two first sign-ins at once both find
    none: the second insert breaks the unique subject, and reads the first's row instead."""
    found = select(ApiKey).where(ApiKey.subject == subject)
    row = session.scalar(found)
    if row is not None:
        return row, False
    row = ApiKey(
        kind=KeyKind.USER,
        subject=subject,
        prefix=USER_PREFIX + secrets.token_hex(5),
        key_hash=NO_KEY_HASH,
        name=display_name(claims),
        scope=grant.scope,
        team_id=team.id,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the concurrent sign-in's row won; nothing else was pending
        session.rollback()
        return session.scalars(found).one(), False
    return row, True


def sign_in_user(session: Session, subject: str, claims: dict, grant: Grant) -> ApiKey:
    """The person's principal, created at the first sign-in and brought up to the claims'
    scope and team at each one after."""
    if len(subject) > SUBJECT_CHARS:  # the column's length; PostgreSQL would refuse it
        raise SignInRefused(
            f"Your identity provider's subject is longer than memaudit keeps ({SUBJECT_CHARS} "
            "characters with the issuer); ask your administrator."
        )
    team = session.scalar(select(Team).where(Team.name == grant.team_name))
    if team is None:  # deleted between the claims' check and now
        raise SignInRefused(f"The team {grant.team_name!r} no longer exists.")
    if team.id == DEFAULT_TEAM:  # grantable_team_names leaves it out; never by a claim
        raise SignInRefused("The default team is not granted through the identity provider.")
    row, new = _person_row(session, subject, claims, grant, team)
    if not new and row.revoked_at is not None:
        raise SignInRefused("Your memaudit access was revoked. Ask an administrator to restore it.")
    before = {"scope": row.scope, "team": row.team_id}
    # Moved to another team, or given less: the sessions opened with the old grant end (as an
    # admin's move does, app/teams.py); this sign-in's own session opens after.
    narrowed = not new and (
        row.team_id != team.id or SCOPE_NAMES.index(grant.scope) < SCOPE_NAMES.index(row.scope)
    )
    row.name, row.email = display_name(claims), verified_email(claims)
    row.scope, row.team_id, row.last_used_at = grant.scope, team.id, utcnow()
    session.flush()
    if narrowed:
        session.execute(delete(BrowserSession).where(BrowserSession.key_id == row.id))
    # The identity provider's claims made or changed this principal: the audit log says so.
    with acting_as(session, Actor(kind="identity_provider", name=subject.split(" ")[0])):
        if new:
            detail = {"name": row.name, "kind": KeyKind.USER, "scope": row.scope, "team": team.id}
            record(session, "key.created", "key", row.id, detail)
        elif changed := changes(before, {"scope": row.scope, "team": row.team_id}):
            record(session, "key.assigned", "key", row.id, changed)
    session.commit()
    return row
