"""HTML pages. The key is typed once and kept in an HTTP-only, same-site cookie."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from app import audits
from app.deps import SESSION_COOKIE, SessionDep, SettingsDep, presented_key
from app.errors import ApiError
from app.keys import authenticate

TEMPLATES = Jinja2Templates(
    directory=str(Path(__file__).resolve().parents[2] / "frontend" / "templates")
)
router = APIRouter(include_in_schema=False)


def _signed_in(request: Request, session: SessionDep) -> bool:
    key = presented_key(request)
    return bool(key) and authenticate(session, key) is not None


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={request.url.path}", status_code=303)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/audits", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/audits", error: str | None = None) -> Response:
    return TEMPLATES.TemplateResponse(request, "login.html", {"next": next, "error": error})


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    key: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/audits",
) -> Response:
    if authenticate(session, key.strip()) is None:
        return TEMPLATES.TemplateResponse(
            request,
            "login.html",
            {"next": next, "error": "That key is not valid."},
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
def audits_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    if not _signed_in(request, session):
        return _to_login(request)
    rows, count = audits.list_audits(
        session, status=None, model=None, label=None, limit=200, offset=0
    )
    items = [audits.to_public(session, settings, audit) for audit in rows]
    return TEMPLATES.TemplateResponse(request, "audits.html", {"audits": items, "count": count})


@router.get("/audits/{audit_id}", response_class=HTMLResponse)
def audit_page(
    audit_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    if not _signed_in(request, session):
        return _to_login(request)
    try:
        audit = audits.to_public(session, settings, audits.get_audit(session, audit_id))
    except ApiError:
        return TEMPLATES.TemplateResponse(
            request, "missing.html", {"audit_id": audit_id}, status_code=404
        )
    return TEMPLATES.TemplateResponse(
        request,
        "audit.html",
        {
            "audit": audit,
            "summary_json": json.dumps(audit.summary, indent=2),
            "provenance_json": json.dumps(audit.provenance, indent=2),
        },
    )
