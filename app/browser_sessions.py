"""Dashboard sessions kept on the server: the cookie holds a random id, never the key.

A session row stores the id's hash, its CSRF token and its expiry; revoking the key ends every
session made with it. A cookie is ambient authority (any page on the same host may make the
browser send it: cookies are not confined to a port), so it authenticates only safe reads on
the API; any change needs a Bearer key, or this session's CSRF token from a page whose Origin
is the service's own public URL.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.security import hash_key
from core.db import utcnow
from core.models import ApiKey, BrowserSession

SESSION_COOKIE = "memaudit_session"
LOGIN_COOKIE = "memaudit_login"  # the sign-in form's CSRF nonce, before any session exists
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD")
DEFAULT_NEXT = "/audits"


def open_session(session: Session, key: ApiKey, hours: float) -> tuple[str, BrowserSession]:
    """A new session for a key that just signed in: (cookie value, row)."""
    token = secrets.token_urlsafe(32)
    row = BrowserSession(
        id_hash=hash_key(token),
        key_id=key.id,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + timedelta(hours=hours),
    )
    session.add(row)
    # Expired sessions go when new ones come: the table holds live sessions only.
    session.execute(delete(BrowserSession).where(BrowserSession.expires_at < utcnow()))
    session.commit()
    return token, row


def find_session(session: Session, token: str | None) -> tuple[BrowserSession, ApiKey] | None:
    """The live session behind a cookie and its key; None when expired, unknown or revoked."""
    if not token:
        return None
    found = session.execute(
        select(BrowserSession, ApiKey)
        .join(ApiKey, ApiKey.id == BrowserSession.key_id)
        .where(BrowserSession.id_hash == hash_key(token))
    ).first()
    if found is None:
        return None
    row, key = found
    if row.expires_at <= utcnow() or key.revoked_at is not None:
        return None
    return row, key


def close_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(BrowserSession).where(BrowserSession.id_hash == hash_key(token)))
        session.commit()


def origin_of(url: str) -> str:
    """scheme://host[:port] as a browser sends it in Origin (default ports left out)."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def same_origin(presented: str | None, public_url: str) -> bool:
    return bool(presented) and presented.rstrip("/").lower() == origin_of(public_url)


def tokens_match(presented: str | None, expected: str) -> bool:
    return bool(presented) and hmac.compare_digest(presented.encode(), expected.encode())


def safe_next(target: str | None) -> str:
    """A local path to go to after sign-in; anything a browser could read as another host
    (`//host`, `/\\host`, a scheme, control characters) goes to the audits list instead."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return DEFAULT_NEXT
    if "\\" in target or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return DEFAULT_NEXT
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    return target
