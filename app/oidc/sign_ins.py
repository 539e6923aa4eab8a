"""Sign-ins in progress, kept on the server between the redirect to the identity provider and
the browser's return: the cookie holds a random id (stored only as its hash), the row the
PKCE verifier, the state and the nonce. A row is taken once, whatever the outcome, and lives
minutes: a replayed or forged callback finds nothing.

The cookie is SameSite=Lax, not Strict: the provider sends the browser back with a top-level
GET from its own site, which a Strict cookie would not follow. Lax is safe here because the
cookie only names a sign-in this browser started (binding the callback to it stops an
attacker from finishing their own sign-in in someone else's browser).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from authlib.common.security import generate_token
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.oidc.claims import SignInRefused
from app.security import hash_key
from core.db import utcnow
from core.models import OidcSignIn

SIGN_IN_COOKIE = "memaudit_oidc"
TOO_MANY = "Too many sign-ins are under way right now; try again in a few minutes."
VERIFIER_CHARS = 64  # RFC 7636: 43 to 128 characters of [A-Za-z0-9-._~]


def begin_sign_in(
    session: Session, next_path: str, seconds: int, most_in_progress: int
) -> tuple[str, OidcSignIn]:
    """A new sign-in: (cookie value, row with fresh state, nonce and PKCE verifier); refused
    (503) while `most_in_progress` live ones wait, since anyone may start one."""
    # Abandoned sign-ins go when new ones come: the table holds live ones only.
    session.execute(delete(OidcSignIn).where(OidcSignIn.expires_at < utcnow()))
    session.commit()
    if session.scalar(select(func.count()).select_from(OidcSignIn)) >= most_in_progress:
        raise SignInRefused(TOO_MANY, 503)
    token = secrets.token_urlsafe(32)
    row = OidcSignIn(
        id_hash=hash_key(token),
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        code_verifier=generate_token(VERIFIER_CHARS),
        next_path=next_path,
        expires_at=utcnow() + timedelta(seconds=seconds),
    )
    session.add(row)
    session.commit()
    return token, row


def take_sign_in(session: Session, token: str | None, state: str | None) -> OidcSignIn | None:
    """The sign-in this browser started, removed as it is read; None when unknown, already
    taken, expired, or when the state the provider sent back is not its own."""
    if not token:
        return None
    id_hash = hash_key(token)
    row = session.scalar(select(OidcSignIn).where(OidcSignIn.id_hash == id_hash))
    if row is None:
        return None
    session.expunge(row)
    taken = session.execute(delete(OidcSignIn).where(OidcSignIn.id_hash == id_hash)).rowcount
    session.commit()
    if taken != 1 or row.expires_at <= utcnow():  # another request took it first, or too late
        return None
    if not state or not hmac.compare_digest(state.encode(), row.state.encode()):
        return None
    return row
