"""The dashboard's sign-in through the identity provider: the redirect out, and the callback
that checks the sign-in, maps the claims and opens a browser session.

Every refused callback counts against the client like a bad key on the sign-in form, and
says in one sentence what went wrong; no token, code or secret is ever shown or logged.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.browser_sessions import safe_next
from app.dashboard.rendering import page
from app.dashboard.routes import secure_cookies, start_session
from app.deps import SessionDep, SettingsDep, refuse_failed_attempt, refuse_throttled_client
from app.oidc.claims import ClaimRules, SignInRefused, grant_from_claims
from app.oidc.principals import grantable_team_names, sign_in_user, subject_of
from app.oidc.provider import (
    CALLBACK_PATH,
    ProviderError,
    authorization_url,
    discover,
    redeem_code,
)
from app.oidc.sign_ins import SIGN_IN_COOKIE, begin_sign_in, take_sign_in
from core.config import Settings
from core.errors import ApiError
from core.models import ApiKey, OidcSignIn

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
UNREACHABLE = "The identity provider could not be reached; try again, or sign in with an API key."
UNVERIFIED = "The identity provider's answer could not be verified; sign in again."


def claim_rules(settings: Settings) -> ClaimRules:
    return ClaimRules(
        settings.oidc_roles_claim,
        settings.oidc_role_scope_map,
        settings.oidc_teams_claim,
        settings.oidc_team_prefix,
    )


def _refusal_page(
    request: Request, reason: str, status_code: int, headers: dict[str, str] | None = None
) -> Response:
    response = page(
        request, "sign_in_refused.html", {"reason": reason, "signed_in": False}, status_code
    )
    response.headers.update(headers or {})
    response.delete_cookie(SIGN_IN_COOKIE, path=CALLBACK_PATH)
    return response


def _refused(
    request: Request, session: Session, settings: Settings, refusal: SignInRefused
) -> Response:
    """The refusal page, counted against the client (429 once past the limit)."""
    try:
        refuse_failed_attempt(request, session, settings)
    except ApiError as throttled:
        return _refusal_page(request, throttled.message, 429, throttled.headers)
    return _refusal_page(request, refusal.message, refusal.status_code)


def _throttled(request: Request, session: Session, settings: Settings) -> Response | None:
    """The 429 page for a client past the failure limit, before it starts a sign-in or makes
    the service call the provider; None for any other client."""
    try:
        refuse_throttled_client(request, session, settings)
    except ApiError as throttled:
        return _refusal_page(request, throttled.message, 429, throttled.headers)
    return None


@router.get("/login/oidc")
def start(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    next: str = Query("/audits", max_length=2000),
) -> Response:
    """Off to the identity provider, with state, nonce and a PKCE challenge; the verifier and
    the rest stay on the server, behind a cookie that names this sign-in."""
    if not settings.oidc_enabled:
        return RedirectResponse("/login", status_code=303)
    if throttled := _throttled(request, session, settings):
        return throttled
    try:
        metadata = discover(settings)
        token, flow = begin_sign_in(
            session,
            safe_next(next),
            settings.oidc_sign_in_seconds,
            settings.oidc_max_sign_ins_in_progress,
        )
    except ProviderError as exc:
        log.warning("oidc discovery failed: %s", exc)
        return _refusal_page(request, UNREACHABLE, 502)
    except SignInRefused as refusal:
        log.warning("oidc sign-in not started: %s", refusal.message)
        return _refusal_page(request, refusal.message, refusal.status_code, {"Retry-After": "60"})
    url = authorization_url(settings, metadata, flow.state, flow.nonce, flow.code_verifier)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        httponly=True,
        samesite="lax",  # the provider brings the browser back cross-site (sign_ins.py)
        secure=secure_cookies(settings),
        max_age=settings.oidc_sign_in_seconds,
        path=CALLBACK_PATH,
    )
    return response


def _principal(session: Session, settings: Settings, flow: OidcSignIn, code: str) -> ApiKey:
    """The person behind a verified code, as the service's principal."""
    try:
        metadata = discover(settings)
        claims = redeem_code(settings, metadata, code, flow.code_verifier, flow.nonce)
    except ProviderError as exc:
        log.warning("oidc sign-in not verified: %s", exc)
        raise SignInRefused(UNVERIFIED, 401) from None
    grant = grant_from_claims(claims, claim_rules(settings), grantable_team_names(session))
    return sign_in_user(session, subject_of(metadata.issuer, str(claims["sub"])), claims, grant)


@router.get(CALLBACK_PATH)
def callback(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    code: str | None = Query(None, max_length=4000),
    state: str | None = Query(None, max_length=200),
    error: str | None = Query(None, max_length=200),
) -> Response:
    # A client past the failure limit is answered before anything else: its code is never
    # taken to the provider's token endpoint (no request out on its behalf).
    if throttled := _throttled(request, session, settings):
        return throttled
    flow = take_sign_in(session, request.cookies.get(SIGN_IN_COOKIE), state)
    try:
        if not settings.oidc_enabled or flow is None:
            raise SignInRefused(
                "This sign-in expired or did not start in this browser; sign in again.", 400
            )
        if error or not code:
            raise SignInRefused(
                f"The identity provider did not sign you in ({error or 'no code'}).", 401
            )
        key = _principal(session, settings, flow, code)
    except SignInRefused as refusal:
        log.info("oidc sign-in refused: %s", refusal.message)
        return _refused(request, session, settings, refusal)
    # A page, not a redirect: the session cookie is SameSite=Strict, and a redirect chain that
    # began on the provider's site would not carry it to the next page.
    response = page(request, "signed_in.html", {"next": flow.next_path, "signed_in": False})
    start_session(response, session, settings, key)
    response.delete_cookie(SIGN_IN_COOKIE, path=CALLBACK_PATH)
    return response
