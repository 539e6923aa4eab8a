"""HTML pages. A key is typed once; the browser then holds a server-side session.

Pages render server-side from the stored summaries; the records table pages through the JSON
API with the same session (reads only). Nothing is fetched from outside: plotly.js is served
from the installed `plotly` package.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app import audits, record_changes
from app.audit_log import LogFilters, list_entries
from app.browser_sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    close_session,
    find_session,
    open_session,
    origin_of,
    safe_next,
    same_origin,
    tokens_match,
)
from app.dashboard import pages, record_changes_page, registry_pages
from app.dashboard.rendering import PLOTLY_JS, page
from app.deps import SessionDep, SettingsDep, bearer_key, refuse_failed_attempt
from app.keys import authenticate
from app.oidc.provider import provider_name
from core.config import Settings
from core.errors import ApiError
from core.models import ApiKey

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 25
LOGIN_NONCE_SECONDS = 3600


@dataclass(frozen=True)
class Viewer:
    key: ApiKey
    csrf_token: str  # empty for a Bearer key: it needs none


def _viewer(request: Request, session: SessionDep) -> Viewer | None:
    """The browser's session, or a Bearer key (pages are reads: no ambient authority)."""
    header = request.headers.get("authorization")
    if header is not None:
        key = bearer_key(request, session, request.app.state.settings, header)
        return Viewer(key, "") if key is not None else None
    found = find_session(session, request.cookies.get(SESSION_COOKIE))
    return Viewer(found[1], found[0].csrf_token) if found is not None else None


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)


def secure_cookies(settings: Settings) -> bool:
    return settings.public_url.startswith("https://")


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/audits", status_code=303)


@router.get("/assets/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(
        PLOTLY_JS,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


def _login_page(
    request: Request,
    settings: Settings,
    next_path: str,
    error: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The sign-in form with a fresh CSRF nonce, also set as a cookie only this path reads."""
    nonce = secrets.token_urlsafe(24)
    context = {
        "next": safe_next(next_path),
        "error": error,
        "signed_in": False,
        "nonce": nonce,
        "oidc_provider": provider_name(settings) if settings.oidc_enabled else None,
    }
    response = page(request, "login.html", context, status_code=status_code)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(settings),
        max_age=LOGIN_NONCE_SECONDS,
        path="/login",
    )
    response.headers.update(headers or {})
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, settings: SettingsDep, next: str = "/audits") -> Response:
    return _login_page(request, settings, next)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    key: Annotated[str, Form(max_length=200)],
    nonce: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/audits",
) -> Response:
    origin = request.headers.get("origin")
    if not same_origin(origin, settings.public_url):
        # A form posted from another site, or another port of this host, never signs in.
        return _login_page(
            request,
            settings,
            next,
            f"Sign in from {origin_of(settings.public_url)} (this page came from "
            f"{origin or 'an unknown origin'}; MEMAUDIT_PUBLIC_URL names the address to use).",
            status_code=403,
        )
    if not tokens_match(nonce, request.cookies.get(LOGIN_COOKIE) or ""):
        return _login_page(
            request, settings, next, "The sign-in form expired; try again.", status_code=403
        )
    api_key = authenticate(session, key.strip())
    if api_key is None:
        try:
            refuse_failed_attempt(request, session, settings)
        except ApiError as throttled:
            return _login_page(
                request,
                settings,
                next,
                throttled.message,
                status_code=429,
                headers=throttled.headers,
            )
        return _login_page(request, settings, next, "That key is not valid.", status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    start_session(response, session, settings, api_key)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


def start_session(response: Response, session: Session, settings: Settings, key: ApiKey) -> None:
    """A new browser session for a key or person that just signed in, set as the cookie."""
    token, _row = open_session(session, key, settings.session_hours)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(settings),
        max_age=int(settings.session_hours * 3600),
    )


@router.post("/logout")
def logout(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    found = find_session(session, request.cookies.get(SESSION_COOKIE))
    if found is not None and (
        not tokens_match(csrf_token, found[0].csrf_token)
        or not same_origin(request.headers.get("origin"), settings.public_url)
    ):
        raise ApiError(403, "csrf_failed", "sign out from the dashboard's own page")
    close_session(session, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _page(
    request: Request, template: str, viewer: Viewer, context: dict, status_code: int = 200
) -> Response:
    context["csrf_token"] = viewer.csrf_token
    context["is_admin"] = viewer.key.is_admin  # the navigation shows the admin pages
    return page(request, template, context, status_code=status_code)


def _missing(request: Request, viewer: Viewer, what: str) -> Response:
    return _page(request, "missing.html", viewer, {"what": what}, status_code=404)


def _admins_only(request: Request, viewer: Viewer, what: str) -> Response:
    return _page(request, "admins_only.html", viewer, {"what": what}, status_code=403)


@router.get("/audits", response_class=HTMLResponse)
def audits_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    status: str | None = None,
    family: str | None = None,
    label: str | None = None,
    page_number: Annotated[int, Query(alias="page", ge=1)] = 1,
) -> Response:
    viewer = _viewer(request, session)
    if viewer is None:
        return _to_login(request)
    key = viewer.key
    filters = {"status": status or None, "family": family or None, "label": label or None}
    try:
        context = pages.audit_list(session, settings, key, filters, page_number, PAGE_SIZE)
    except ApiError as exc:
        context = pages.audit_list(session, settings, key, {}, 1, PAGE_SIZE)
        context["filter_error"] = exc.message
    return _page(request, "audits.html", viewer, context)


@router.get("/audits/{audit_id}", response_class=HTMLResponse)
def audit_page(
    audit_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    viewer = _viewer(request, session)
    if viewer is None:
        return _to_login(request)
    try:
        audit = audits.get_audit(session, audit_id, viewer.key)
    except ApiError:
        return _missing(request, viewer, f"audit {audit_id}")
    context = pages.audit_report(session, settings, audit)
    context["baselines"] = record_changes_page.comparable_audits(session, viewer.key, audit)
    return _page(request, "audit.html", viewer, context)


@router.get("/audits/{audit_id}/compare", response_class=HTMLResponse)
def choose_baseline(audit_id: str, request: Request, other: str = "") -> Response:
    """The report's "compare records with…" form names the baseline in its query."""
    if not other:
        return RedirectResponse(f"/audits/{quote(audit_id, safe='')}", status_code=303)
    target = f"/audits/{quote(audit_id, safe='')}/compare/{quote(other, safe='')}"
    return RedirectResponse(target, status_code=303)


@router.get("/audits/{audit_id}/compare/{other_id}", response_class=HTMLResponse)
def record_changes_route(
    audit_id: str,
    other_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    kind: str | None = None,
    check: str | None = None,
    metric: str | None = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    """Records that changed from the baseline (other_id) to the candidate (audit_id)."""
    viewer = _viewer(request, session)
    if viewer is None:
        return _to_login(request)
    filters = {"kind": kind or None, "check": check or None, "metric": metric or None}
    try:
        comparison = record_changes.open_comparison(session, viewer.key, audit_id, other_id)
        context = record_changes_page.record_changes_context(
            session, settings, comparison, filters, page_number, PAGE_SIZE
        )
    except ApiError as exc:
        if exc.status == 404:
            return _missing(request, viewer, exc.message)
        context = {"error": exc.message, "candidate_id": audit_id, "baseline_id": other_id}
        return _page(request, "record_changes.html", viewer, context, status_code=exc.status)
    return _page(request, "record_changes.html", viewer, context)


@router.get("/models", response_class=HTMLResponse)
def model_page(
    request: Request, session: SessionDep, settings: SettingsDep, family: str
) -> Response:
    viewer = _viewer(request, session)
    if viewer is None:
        return _to_login(request)
    context = pages.model_history(session, settings, viewer.key, family)
    if context is None:
        return _missing(request, viewer, f"model {family}")
    return _page(request, "model.html", viewer, context)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request, session: SessionDep, settings: SettingsDep, a: str, b: str
) -> Response:
    viewer = _viewer(request, session)
    if viewer is None:
        return _to_login(request)
    try:
        first = audits.get_audit(session, a, viewer.key)
        second = audits.get_audit(session, b, viewer.key)
    except ApiError as exc:
        return _missing(request, viewer, exc.message)
    return _page(
        request, "compare.html", viewer, pages.comparison(session, settings, first, second)
    )


@router.get("/deliveries", response_class=HTMLResponse)
def deliveries_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    source: str | None = None,
    outcome: str | None = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    """Webhook health: admin only, since deliveries name registry models and policies."""
    viewer = _viewer(request, session)
    if viewer is None:
        return _to_login(request)
    if not viewer.key.is_admin:
        return _admins_only(request, viewer, "webhook deliveries")
    filters = {"source": source, "outcome": outcome}
    context = registry_pages.deliveries(session, settings, filters, page_number, PAGE_SIZE)
    return _page(request, "deliveries.html", viewer, context)


@router.get("/policies", response_class=HTMLResponse)
def policies_page(request: Request, session: SessionDep) -> Response:
    viewer = _viewer(request, session)
    if viewer is None:
        return _to_login(request)
    if not viewer.key.is_admin:
        return _admins_only(request, viewer, "audit policies")
    return _page(request, "policies.html", viewer, registry_pages.policy_overview(session))


@router.get("/admin/audit-log", response_class=HTMLResponse)
def audit_log_page(
    request: Request,
    session: SessionDep,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target: Annotated[str | None, Query(max_length=240)] = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    """Who changed what, newest first: admin only, like the API it mirrors."""
    viewer = _viewer(request, session)
    if viewer is None:
        return _to_login(request)
    if not viewer.key.is_admin:
        return _admins_only(request, viewer, "audit log")
    filters = {"actor": actor or "", "action": action or "", "target": target or ""}
    listed = list_entries(
        session,
        LogFilters(actor=actor or None, action=action or None, target=target or None),
        PAGE_SIZE,
        (page_number - 1) * PAGE_SIZE,
    )
    context = {
        "rows": listed.data,
        "count": listed.count,
        "page": page_number,
        "pages": max(1, -(-listed.count // PAGE_SIZE)),
        "filters": filters,
    }
    return _page(request, "audit_log.html", viewer, context)
