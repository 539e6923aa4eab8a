"""Typed dependencies: the database session, the settings and the authenticated key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import ApiError
from app.keys import authenticate
from app.models import ApiKey
from app.security import scope_allows

SESSION_COOKIE = "memaudit_key"


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


def presented_key(request: Request) -> str | None:
    """A Bearer header for API clients; the HTTP-only cookie for the dashboard."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return request.cookies.get(SESSION_COOKIE)


def require_scope(scope: str) -> Callable[[Request, Session], ApiKey]:
    def dependency(request: Request, session: SessionDep) -> ApiKey:
        key = presented_key(request)
        challenge = {"WWW-Authenticate": "Bearer"}
        if key is None:
            raise ApiError(
                401, "unauthorized", "missing Authorization: Bearer <key>", headers=challenge
            )
        api_key = authenticate(session, key) if key else None
        if api_key is None:
            raise ApiError(401, "invalid_key", "the API key is not valid", headers=challenge)
        if not scope_allows(api_key.scope, scope):
            raise ApiError(
                403, "forbidden", f"this key has scope {api_key.scope!r}; {scope!r} is needed"
            )
        return api_key

    return dependency


ReadKey = Annotated[ApiKey, Depends(require_scope("read"))]
SubmitKey = Annotated[ApiKey, Depends(require_scope("submit"))]
AdminKey = Annotated[ApiKey, Depends(require_scope("admin"))]
