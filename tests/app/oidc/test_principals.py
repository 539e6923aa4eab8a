"""A person's principal: made at the first sign-in, brought up to the claims at each one after;
the default team is never granted by a claim."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.browser_sessions import open_session
from app.oidc.claims import Grant, SignInRefused
from app.oidc.principals import grantable_team_names, sign_in_user, subject_of
from core.db import Database
from core.models import DEFAULT_TEAM, ApiKey, BrowserSession
from tests.app.oidc.conftest import ISSUER

SUBJECT = subject_of(ISSUER, "alice")


def test_the_default_team_is_never_granted_by_a_group(db: Database) -> None:
    with db.session() as session:
        assert sorted(grantable_team_names(session)) == ["speech", "vision"]
        with pytest.raises(SignInRefused, match="default team"):
            sign_in_user(session, SUBJECT, {"sub": "alice"}, Grant("read", DEFAULT_TEAM))
        assert session.scalar(select(ApiKey).where(ApiKey.subject == SUBJECT)) is None


@pytest.mark.parametrize(
    ("claims", "name", "email"),
    [
        ({"email": "alice@example.org", "email_verified": True}, "alice@example.org", True),
        ({"email": "alice@example.org", "email_verified": "true"}, "alice@example.org", True),
        ({"email": "ceo@example.org"}, "sub alice", False),
        (
            {"email": "ceo@example.org", "email_verified": False, "name": "Al"},
            "Al (sub alice)",
            False,
        ),
        ({"email": "ceo@example.org", "preferred_username": "ceo"}, "ceo (sub alice)", False),
    ],
)
def test_an_unverified_email_is_neither_the_name_nor_stored(
    db: Database, claims: dict, name: str, email: bool
) -> None:
    with db.session() as session:
        row = sign_in_user(session, SUBJECT, {"sub": "alice", **claims}, Grant("read", "vision"))
        assert row.name == name
        assert row.email == (claims["email"] if email else None)


def _sessions(db: Database, key_id: str) -> int:
    with db.session() as session:
        rows = session.scalars(select(BrowserSession).where(BrowserSession.key_id == key_id))
        return len(rows.all())


def test_a_sign_in_that_moves_or_narrows_a_person_ends_their_other_sessions(
    db: Database,
) -> None:
    claims = {"sub": "alice"}
    with db.session() as session:
        key = sign_in_user(session, SUBJECT, claims, Grant("submit", "vision"))
        open_session(session, key, 1)
        sign_in_user(session, SUBJECT, claims, Grant("submit", "vision"))  # nothing changed
        assert _sessions(db, key.id) == 1
        sign_in_user(session, SUBJECT, claims, Grant("read", "vision"))  # less: ends them
        assert _sessions(db, key.id) == 0
        open_session(session, key, 1)
        sign_in_user(session, SUBJECT, claims, Grant("submit", "vision"))  # more: kept
        assert _sessions(db, key.id) == 1
        sign_in_user(session, SUBJECT, claims, Grant("submit", "speech"))  # moved: ends them
        assert _sessions(db, key.id) == 0


def test_two_first_sign_ins_at_once_make_one_principal(db: Database) -> None:
    """The second insert breaks the unique subject: it reads the first's row, no error."""
    claims, grant = {"sub": "alice"}, Grant("read", "vision")

    def the_other_sign_in_wins(_flushing: Session, _context: object, _instances: object) -> None:
        with db.session() as other:
            sign_in_user(other, SUBJECT, claims, grant)

    with db.session() as session:
        event.listen(session, "before_flush", the_other_sign_in_wins, once=True)
        row = sign_in_user(session, SUBJECT, claims, grant)
        rows = session.scalars(select(ApiKey).where(ApiKey.subject == SUBJECT)).all()
        assert [r.id for r in rows] == [row.id]
        assert (row.scope, row.team_id) == ("read", "vision")


def test_a_subject_longer_than_the_column_is_refused(db: Database) -> None:
    subject = subject_of(ISSUER, "x" * 500)
    with db.session() as session, pytest.raises(SignInRefused, match="longer than memaudit"):
        sign_in_user(session, subject, {"sub": "x" * 500}, Grant("read", "vision"))
