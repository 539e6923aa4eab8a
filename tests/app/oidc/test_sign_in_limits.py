"""What an unauthenticated client can make the service do through the sign-in is bounded: a
client past the failure limit makes no request to the provider and starts no sign-in, the
provider's keys are fetched once (again only when it signs with a key they lack), and the
sign-ins in progress are capped."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select

from app.oidc import provider as oidc_provider
from core.db import Database
from core.models import OidcSignIn
from tests.app.oidc.conftest import Dashboard, Provider, start_sign_in


def _token_requests(provider: Provider) -> int:
    return sum("token" in path for path in provider.requests)


def _key_requests(provider: Provider) -> int:
    return sum("jwks" in path for path in provider.requests)


def test_a_throttled_client_makes_no_request_to_the_provider(
    dashboard: Callable[..., Dashboard], provider: Provider
) -> None:
    client = dashboard(auth_failure_limit=2).client
    callback = start_sign_in(client)
    sign_in_cookie = dict(client.cookies)
    client.cookies.clear()
    for _ in range(2):  # two forged callbacks, without the sign-in's cookie
        assert client.get("/login/oidc/callback?code=x&state=y").status_code in (400, 429)
    client.cookies.update(sign_in_cookie)
    asked = len(provider.requests)
    refused = client.get(callback)
    assert refused.status_code == 429 and refused.headers["retry-after"]
    assert len(provider.requests) == asked and _token_requests(provider) == 0
    started = client.get("/login/oidc", follow_redirects=False)
    assert started.status_code == 429 and len(provider.requests) == asked


def test_the_providers_keys_are_fetched_once_and_again_for_an_unknown_key(
    dashboard: Callable[..., Dashboard], provider: Provider
) -> None:
    client = dashboard().client
    for _ in range(2):
        assert client.get(start_sign_in(client)).status_code == 200
    assert (_token_requests(provider), _key_requests(provider)) == (2, 1)
    # The provider rotated its keys: the cached set lacks the token's key, fetched once more.
    for uri in oidc_provider._jwks_cache:
        if uri.startswith(provider.issuer):
            oidc_provider._jwks_cache[uri] = (oidc_provider.time.monotonic(), {"keys": []})
    assert client.get(start_sign_in(client)).status_code == 200
    assert _key_requests(provider) == 2


def test_sign_ins_in_progress_are_capped(dashboard: Callable[..., Dashboard]) -> None:
    made = dashboard(oidc_max_sign_ins_in_progress=2)
    for _ in range(2):
        assert made.client.get("/login/oidc", follow_redirects=False).status_code == 303
    refused = made.client.get("/login/oidc", follow_redirects=False)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "60"
    assert "Too many sign-ins" in refused.text
    database = Database(made.settings.database_url)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(OidcSignIn)) == 2
    database.dispose()
