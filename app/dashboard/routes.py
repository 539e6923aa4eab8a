"""HTML pages. The key is typed once and kept in an HTTP-only, same-site cookie.

Pages render server-side from the stored summaries; the records table pages through the JSON
API with the same cookie. Nothing is fetched from outside: plotly.js is served from the
installed `plotly` package.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from app import audits
from app.dashboard import pages
from app.dashboard.rendering import PLOTLY_JS, page
from app.deps import SESSION_COOKIE, SessionDep, SettingsDep, presented_key
from app.errors import ApiError
from app.keys import authenticate

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 25


def _signed_in(request: Request, session: SessionDep) -> bool:
    key = presented_key(request)
    return bool(key) and authenticate(session, key) is not None


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={target}", status_code=303)


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


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/audits", error: str | None = None) -> Response:
    return page(request, "login.html", {"next": next, "error": error, "signed_in": False})


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    key: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/audits",
) -> Response:
    if authenticate(session, key.strip()) is None:
        return page(
            request,
            "login.html",
            {"next": next, "error": "That key is not valid.", "signed_in": False},
            status_code=401,
        )
    # Only local paths: an absolute URL here would make the login an open redirect.
    target = next if next.startswith("/") and not next.startswith("//") else "/audits"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        key.strip(),
        httponly=True,
        samesite="strict",
        secure=settings.public_url.startswith("https://"),
        max_age=7 * 24 * 3600,
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


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
    if not _signed_in(request, session):
        return _to_login(request)
    filters = {"status": status or None, "family": family or None, "label": label or None}
    try:
        context = pages.audit_list(session, settings, filters, page_number, PAGE_SIZE)
    except ApiError as exc:
        context = pages.audit_list(session, settings, {}, 1, PAGE_SIZE)
        context["filter_error"] = exc.message
    return page(request, "audits.html", context)


@router.get("/audits/{audit_id}", response_class=HTMLResponse)
def audit_page(
    audit_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    if not _signed_in(request, session):
        return _to_login(request)
    try:
        audit = audits.get_audit(session, audit_id)
    except ApiError:
        return page(request, "missing.html", {"what": f"audit {audit_id}"}, status_code=404)
    return page(request, "audit.html", pages.audit_report(session, settings, audit))


@router.get("/models", response_class=HTMLResponse)
def model_page(
    request: Request, session: SessionDep, settings: SettingsDep, family: str
) -> Response:
    if not _signed_in(request, session):
        return _to_login(request)
    context = pages.model_history(session, settings, family)
    if context is None:
        return page(request, "missing.html", {"what": f"model {family}"}, status_code=404)
    return page(request, "model.html", context)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request, session: SessionDep, settings: SettingsDep, a: str, b: str
) -> Response:
    if not _signed_in(request, session):
        return _to_login(request)
    try:
        first, second = audits.get_audit(session, a), audits.get_audit(session, b)
    except ApiError as exc:
        return page(request, "missing.html", {"what": exc.message}, status_code=404)
    return page(request, "compare.html", pages.comparison(session, settings, first, second))
