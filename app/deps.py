"""Typed dependencies: the database session, the settings and the authenticated key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.browser_sessions import (
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    find_session,
    origin_of,
    same_origin,
    tokens_match,
)
from app.keys import authenticate
from app.security import scope_allows
from app.throttle import client_address, record_failure, retry_after
from core.audit_log import bind_actor, key_actor
from core.config import Settings
from core.errors import ApiError
from core.models import ApiKey


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_celery(request: Request) -> Celery:
    return request.app.state.celery


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
SessionDep = Annotated[Session, Depends(get_session)]
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def request_client(request: Request, settings: Settings) -> str:
    """The client a throttle counts: the peer, or what a trusted proxy says it serves (every
    X-Forwarded-For line, in order: a proxy may add its own line after the client's)."""
    peer = request.client.host if request.client else None
    forwarded = ", ".join(request.headers.getlist("x-forwarded-for"))
    return client_address(peer, forwarded, settings.trusted_proxy_networks)


def _throttled(wait: int) -> ApiError:
    return ApiError(
        429,
        "too_many_failures",
        f"too many failed keys from this client; try again in {wait} s",
        {"retry_after_seconds": wait},
        headers={"Retry-After": str(wait)},
    )


def refuse_failed_attempt(request: Request, session: Session, settings: Settings) -> None:
    """Count a failed key or sign-in for this client; past the limit the answer is 429 (and
    nothing more is written for it until the window ends).

    A valid key is never refused: keys carry 256 bits, so no number of guesses finds one, and a
    client behind a shared address must not be locked out by another's failures. The throttle
    bounds the work and the noise a bad client makes."""
    client = request_client(request, settings)
    limit, window = settings.auth_failure_limit, settings.auth_failure_window_seconds
    wait = retry_after(session, client, limit, window)
    if wait is None:
        record_failure(session, client, window)
        wait = retry_after(session, client, limit, window)
    if wait is not None:
        raise _throttled(wait)


def refuse_throttled_client(request: Request, session: Session, settings: Settings) -> None:
    """429 for a client already past the failure limit, before its request costs anything (a
    sign-in's call out to the identity provider, a row); counts nothing itself."""
    client = request_client(request, settings)
    limit, window = settings.auth_failure_limit, settings.auth_failure_window_seconds
    if (wait := retry_after(session, client, limit, window)) is not None:
        raise _throttled(wait)


def bearer_key(
    request: Request, session: Session, settings: Settings, header: str
) -> ApiKey | None:
    """The key an Authorization header presents; a bad one is counted against the client
    (429 past the limit) and is None."""
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    api_key = authenticate(session, token) if token else None
    if api_key is None:
        refuse_failed_attempt(request, session, settings)
    return api_key


def authenticate_request(request: Request, session: Session, settings: Settings) -> ApiKey:
    """A Bearer key, or a browser session: for reads only, unless the request carries the
    session's CSRF token from a page of the service's own origin. The key becomes the actor
    the audit log records for every change this request's session makes."""
    api_key = _authenticated_key(request, session, settings)
    bind_actor(session, key_actor(api_key, request_client(request, settings)))
    return api_key


def _authenticated_key(request: Request, session: Session, settings: Settings) -> ApiKey:
    header = request.headers.get("authorization")
    if header is not None:
        api_key = bearer_key(request, session, settings, header)
        if api_key is None:
            raise ApiError(401, "invalid_key", "the API key is not valid", headers=CHALLENGE)
        return api_key
    found = find_session(session, request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise ApiError(
            401, "unauthorized", "missing Authorization: Bearer <key>", headers=CHALLENGE
        )
    row, api_key = found
    if request.method not in SAFE_METHODS and not (
        tokens_match(request.headers.get(CSRF_HEADER), row.csrf_token)
        and same_origin(request.headers.get("origin"), settings.public_url)
    ):
        raise ApiError(
            403,
            "csrf_failed",
            "a browser session only reads; a change needs Authorization: Bearer <key>, or the "
            f"session's X-CSRF-Token from a page of {origin_of(settings.public_url)}",
        )
    return api_key


def require_scope(scope: str) -> Callable[..., ApiKey]:
    def dependency(request: Request, session: SessionDep, settings: SettingsDep) -> ApiKey:
        api_key = authenticate_request(request, session, settings)
        if not scope_allows(api_key.scope, scope):
            raise ApiError(
                403, "forbidden", f"this key has scope {api_key.scope!r}; {scope!r} is needed"
            )
        return api_key

    return dependency


ReadKey = Annotated[ApiKey, Depends(require_scope("read"))]
SubmitKey = Annotated[ApiKey, Depends(require_scope("submit"))]
AdminKey = Annotated[ApiKey, Depends(require_scope("admin"))]
