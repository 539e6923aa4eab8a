"""The identity provider's side of a sign-in: discovery, the authorization URL (code flow,
PKCE S256, state and nonce), the code's redemption and the ID token's validation (signature
against the provider's JWKS, issuer, audience, expiry, nonce, at_hash), and the roles and teams
claims from the userinfo endpoint when the ID token lacks them. authlib builds the
requests and checks the ID token's claims (joserfc, its JOSE library, the signature); the
requests themselves go out through the service's own checked client, since authlib's HTTP
client is built on httpx2, whose transports the checked one is not.

Every request goes through core/outbound's checked client: the issuer is operator
configuration, not user input, but the discovery document names further hosts (token
endpoint, JWKS), so the same rules hold as for any request the service sends: no proxy from
the environment, no DNS rebinding, and private addresses only with MEMAUDIT_OIDC_ALLOW_PRIVATE.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry, extract_compact

from core.config import Settings
from core.outbound import UrlNotAllowed, checked_client

log = logging.getLogger(__name__)

CALLBACK_PATH = "/login/oidc/callback"
DISCOVERY_PATH = "/.well-known/openid-configuration"
METADATA_TTL_SECONDS = 3600.0
CLOCK_LEEWAY_SECONDS = 60
# Signatures by the provider's public keys only: a symmetric (HS*) or `none` token would be
# one the client secret, or nobody, could forge.
ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
SETTING = "MEMAUDIT_OIDC_ISSUER"


class ProviderError(Exception):
    """The identity provider could not be reached, or its answer did not verify. The message
    is for the log; the person sees a plain sentence."""


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    userinfo_endpoint: str = ""


_cache: dict[str, tuple[float, ProviderMetadata]] = {}
# The provider's signing keys, by JWKS URL, kept as long as the discovery document: a sign-in
# costs one request out (the token endpoint), not two.
_jwks_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_cache_lock = threading.Lock()


def redirect_uri(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + CALLBACK_PATH


def provider_name(settings: Settings) -> str:
    return settings.oidc_provider_name or httpx.URL(settings.oidc_issuer).host


def _client(settings: Settings) -> httpx.Client:
    return checked_client(
        [],
        settings.oidc_allow_private,
        setting=SETTING,
        private_setting="MEMAUDIT_OIDC_ALLOW_PRIVATE",
        timeout=settings.oidc_timeout_seconds,
    )


def _get_json(settings: Settings, url: str) -> dict[str, Any]:
    try:
        with _client(settings) as client:
            response = client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, UrlNotAllowed, ValueError) as exc:
        raise ProviderError(f"GET {url}: {exc}") from None
    if not isinstance(body, dict):
        raise ProviderError(f"GET {url}: not a JSON object")
    return body


def discover(settings: Settings) -> ProviderMetadata:
    """The provider's endpoints from its discovery document (cached an hour per process); the
    document must name the configured issuer exactly (OpenID Connect Discovery, 4.3)."""
    issuer = settings.oidc_issuer.rstrip("/")
    with _cache_lock:
        cached = _cache.get(issuer)
    if cached is not None and time.monotonic() - cached[0] < METADATA_TTL_SECONDS:
        return cached[1]
    document = _get_json(settings, issuer + DISCOVERY_PATH)
    if str(document.get("issuer", "")).rstrip("/") != issuer:
        raise ProviderError(f"the discovery document names issuer {document.get('issuer')!r}")
    missing = [
        k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not document.get(k)
    ]
    if missing:
        raise ProviderError(f"the discovery document lacks {', '.join(missing)}")
    offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(alg for alg in ASYMMETRIC_ALGORITHMS if alg in offered)
    if not algorithms:
        raise ProviderError(f"no asymmetric ID token signature among {offered}")
    metadata = ProviderMetadata(
        str(document["issuer"]),
        str(document["authorization_endpoint"]),
        str(document["token_endpoint"]),
        str(document["jwks_uri"]),
        algorithms,
        str(document.get("userinfo_endpoint") or ""),
    )
    with _cache_lock:
        _cache[issuer] = (time.monotonic(), metadata)
    return metadata


def authorization_url(
    settings: Settings, metadata: ProviderMetadata, state: str, nonce: str, code_verifier: str
) -> str:
    """Where the browser goes to sign in: carries state, nonce and the verifier's S256
    challenge (the verifier itself stays on the server)."""
    return prepare_grant_uri(
        metadata.authorization_endpoint,
        settings.oidc_client_id,
        "code",
        redirect_uri=redirect_uri(settings),
        scope=settings.oidc_scopes,
        state=state,
        nonce=nonce,
        code_challenge=create_s256_code_challenge(code_verifier),
        code_challenge_method="S256",
    )


def _token_response(
    settings: Settings, metadata: ProviderMetadata, code: str, verifier: str
) -> dict:
    """The token endpoint's answer to the code and its PKCE verifier; the client secret goes
    as HTTP Basic (client_secret_basic), a public client sends its id instead."""
    body = prepare_token_request(
        "authorization_code", code=code, redirect_uri=redirect_uri(settings), code_verifier=verifier
    )
    secret = settings.oidc_client_secret
    auth = (quote(settings.oidc_client_id, safe=""), quote(secret, safe="")) if secret else None
    if not secret:
        body += "&" + urlencode({"client_id": settings.oidc_client_id})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    try:
        with _client(settings) as client:
            response = client.post(
                metadata.token_endpoint, content=body, headers=headers, auth=auth
            )
        answer = response.json()
    except (httpx.HTTPError, UrlNotAllowed, ValueError) as exc:
        raise ProviderError(f"token endpoint: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200 or not isinstance(answer, dict):
        error = answer.get("error") if isinstance(answer, dict) else None
        raise ProviderError(f"token endpoint answered {response.status_code} ({error})")
    return answer


def redeem_code(
    settings: Settings, metadata: ProviderMetadata, code: str, code_verifier: str, nonce: str
) -> dict[str, Any]:
    """The verified claims of the ID token the code is exchanged for, with the roles and
    teams claims from the userinfo endpoint where the ID token lacks them."""
    token = _token_response(settings, metadata, code, code_verifier)
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise ProviderError("the token response has no id_token")
    jwks, fetched = provider_keys(settings, metadata)
    access_token = token.get("access_token")
    check = (metadata, settings.oidc_client_id, nonce, access_token)
    try:
        claims = verified_claims(id_token, jwks, *check)
    except ProviderError:
        kid = _key_id(id_token)
        if fetched or (kid is not None and kid in _key_ids(jwks)):
            raise  # not a key the cached set lacks: the token itself is wrong
        # Signed by a key the cached set lacks (or names none): the provider may have rotated
        # its keys since, so they are fetched once more.
        claims = verified_claims(id_token, provider_keys(settings, metadata, True)[0], *check)
    return with_userinfo(settings, metadata, claims, access_token)


def with_userinfo(
    settings: Settings, metadata: ProviderMetadata, claims: dict[str, Any], access_token: Any
) -> dict[str, Any]:
    """The ID token's claims, with the roles and teams claims read from the userinfo endpoint
    when the token lacks them: many providers keep groups out of ID tokens (their size, or by
    configuration). Only those two claims are taken from it, never one the token has, and only
    from an answer about the token's own subject (OpenID Connect Core 5.3.2)."""
    wanted = [
        name
        for name in (settings.oidc_roles_claim, settings.oidc_teams_claim)
        if name not in claims
    ]
    if not wanted or not metadata.userinfo_endpoint or not isinstance(access_token, str):
        return claims
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    try:
        with _client(settings) as client:
            response = client.get(metadata.userinfo_endpoint, headers=headers)
        info = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, UrlNotAllowed, ValueError) as exc:
        info, failure = None, f"{type(exc).__name__}: {exc}"
    else:
        failure = f"answered {response.status_code}, not claims"
    if not isinstance(info, dict):  # an error, or a signed (JWT) answer this client never asks for
        # These claims can only grant: without them the person is judged on the token alone
        # (and refused, if it names no role or team), never let in on less.
        log.warning("oidc userinfo endpoint %s: %s", metadata.userinfo_endpoint, failure)
        return claims
    subject = info.get("sub")
    if not isinstance(subject, str) or subject != claims["sub"]:
        raise ProviderError("the userinfo endpoint answered for another subject")
    return {**{name: info[name] for name in wanted if name in info}, **claims}


def provider_keys(
    settings: Settings, metadata: ProviderMetadata, refresh: bool = False
) -> tuple[dict[str, Any], bool]:
    """(the provider's JWKS, whether it was fetched now): cached like the discovery document,
    fetched again when `refresh` (a token signed by a key the cached set lacks)."""
    with _cache_lock:
        cached = _jwks_cache.get(metadata.jwks_uri)
    if not refresh and cached and time.monotonic() - cached[0] < METADATA_TTL_SECONDS:
        return cached[1], False
    jwks = _get_json(settings, metadata.jwks_uri)
    with _cache_lock:
        _jwks_cache[metadata.jwks_uri] = (time.monotonic(), jwks)
    return jwks, True


def _key_ids(jwks: dict[str, Any]) -> set[str]:
    keys = jwks.get("keys") if isinstance(jwks.get("keys"), list) else []
    return {str(key["kid"]) for key in keys if isinstance(key, dict) and "kid" in key}


def _key_id(id_token: str) -> str | None:
    """The `kid` the token's header names (unverified: it only picks whether to refetch)."""
    try:
        header = extract_compact(id_token.encode()).headers()
    except (JoseError, ValueError):
        return None
    kid = header.get("kid")
    return str(kid) if kid is not None else None


def verified_claims(
    id_token: str,
    jwks: dict[str, Any],
    metadata: ProviderMetadata,
    client_id: str,
    nonce: str,
    access_token: str | None = None,
) -> dict[str, Any]:
    """The ID token's claims once its signature (a key of the provider's JWKS, an asymmetric
    algorithm the provider announced), issuer, audience, expiry and nonce all check out."""
    try:
        decoded = jwt.decode(
            id_token,
            KeySet.import_key_set(jwks),
            registry=JWSRegistry(algorithms=list(metadata.algorithms)),
        )
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": metadata.issuer},
                "aud": {"essential": True, "value": client_id},
                "exp": {"essential": True},
                "sub": {"essential": True},
            },
            {"nonce": nonce, "client_id": client_id, "access_token": access_token},
        )
        claims.validate(leeway=CLOCK_LEEWAY_SECONDS)
    except (JoseError, ValueError) as exc:
        raise ProviderError(f"the ID token did not verify: {type(exc).__name__}: {exc}") from None
    if not nonce or claims.get("nonce") != nonce:  # never skipped, whatever the token holds
        raise ProviderError("the ID token's nonce is not this sign-in's")
    return dict(claims)
