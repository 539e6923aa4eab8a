"""Sign-in through the organisation's identity provider, end to end: a real OpenID provider
(oidc-provider-mock) on loopback, `memaudit serve`, and Chromium.

Two teams each have an audit; a person whose claims name team A signs in through the provider
and sees A's audit and never B's. Forged, replayed or tampered sign-ins are refused, claims
that map to no role or no single team are refused, the person's principal is never a Bearer
key, and API keys still sign in.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import werkzeug.serving
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from oidc_provider_mock import User
from oidc_provider_mock import app as provider_app
from sqlalchemy import create_engine, text

from tests.conftest import filler_records, write_jsonl
from tests.e2e.browsers import Watched
from tests.e2e.conftest import Served, serve

pytestmark = pytest.mark.slow


def _person(sub: str, email: str, roles: list[str], groups: list[str]) -> User:
    claims = {"email": email, "email_verified": True, "roles": roles, "groups": groups}
    return User(sub=sub, claims=claims)


PEOPLE = [
    _person("alice", "alice@example.org", ["auditor"], ["memaudit-team-a", "staff"]),
    _person("no-role", "norole@example.org", ["staff"], ["memaudit-team-a"]),
    _person("outsider", "out@example.org", ["auditor"], ["memaudit-elsewhere"]),
    _person("two-teams", "two@example.org", ["viewer"], ["memaudit-team-a", "memaudit-team-b"]),
]


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    """The identity provider, in a thread on loopback; it requires a nonce, like ours sends."""
    server = werkzeug.serving.make_server(
        "127.0.0.1", 0, provider_app(require_nonce=True, user_claims=PEOPLE), threaded=True
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@dataclass
class Teams:
    served: Served
    audit_a: str
    audit_b: str
    key_b: str
    team_a: str
    last_authorize: ClassVar[str] = ""  # the provider URL of the latest sign-in started


@pytest.fixture(scope="module")
def teams(tmp_path_factory: pytest.TempPathFactory, tiny_lm, issuer: str) -> Iterator[Teams]:
    overrides = {
        "oidc_issuer": issuer,
        "oidc_client_id": "memaudit-dashboard",
        "oidc_client_secret": "a-client-secret-for-this-test",
        "oidc_provider_name": "Test IdP",
        "oidc_role_scopes": "auditor=submit,viewer=read,platform-admin=admin",
        "oidc_teams_claim": "groups",
        "oidc_team_prefix": "memaudit-",
        "oidc_allow_private": True,  # the provider is on loopback
    }
    with serve(tmp_path_factory.mktemp("oidc"), tiny_lm, **overrides) as served:
        dataset = write_jsonl(served.data_root / "few.jsonl", filler_records(8, seed=3))
        ids, keys = {}, {}
        for name in ("team-a", "team-b"):
            grants = {"name": name, "model_folders": ["*"], "data_folders": ["*"]}
            team = served.client.post("/v1/teams", headers=served.headers, json=grants)
            assert team.status_code == 201, team.text
            ids[name] = team.json()["id"]
            made = served.client.post(
                "/v1/keys",
                headers=served.headers,
                json={"name": f"{name}-ci", "scope": "submit", "team": name},
            )
            keys[name] = made.json()["key"]
        audits = {}
        for name in ("team-a", "team-b"):
            body = {
                "model": {"uri": f"path:{tiny_lm.model_dir}"},
                "dataset": {"uri": f"path:{dataset}"},
                "checks": [{"kind": "loss", "params": {}}],
                "labels": {"team": name},
            }
            response = served.client.post(
                "/v1/audits", headers={"Authorization": f"Bearer {keys[name]}"}, json=body
            )
            assert response.status_code == 202, response.text
            audits[name] = response.json()["id"]
        yield Teams(served, audits["team-a"], audits["team-b"], keys["team-b"], ids["team-a"])


def _principals(served: Served) -> dict[str, dict]:
    listed = served.client.get("/v1/keys", headers=served.headers).json()["data"]
    return {key["email"]: key for key in listed if key["kind"] == "user"}


def _to_provider(client: httpx.Client, sub: str) -> str:
    """Start a sign-in in `client` and pass the provider's page as `sub`: the callback URL."""
    started = client.get("/login/oidc", params={"next": "/audits"})
    assert started.status_code == 303, started.text
    Teams.last_authorize = started.headers["location"]
    signed = httpx.post(started.headers["location"], data={"sub": sub})
    assert signed.status_code == 302, signed.text
    return signed.headers["location"]


def _client(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.base_url, timeout=30)


def test_a_person_of_team_a_signs_in_and_sees_only_team_a(browser, teams: Teams) -> None:
    served = teams.served
    watched = Watched(browser, 1280)
    page = watched.page
    page.goto(f"{served.base_url}/audits")
    assert "/login" in page.url
    page.click("text=Sign in with Test IdP")
    page.click("button[value=alice]")  # the provider's page: sign in as alice
    page.wait_for_url(f"{served.base_url}/audits", timeout=15000)
    listed = page.inner_text("main")
    assert teams.audit_a[:8] in page.content() and teams.audit_b[:8] not in page.content(), listed
    response = page.goto(f"{served.base_url}/audits/{teams.audit_b}")
    assert response is not None and response.status == 404
    response = page.goto(f"{served.base_url}/audits/{teams.audit_a}")
    assert response is not None and response.status == 200
    api = page.evaluate("fetch('/v1/audits').then(r => r.json())")
    assert [audit["id"] for audit in api["data"]] == [teams.audit_a]
    # The request to the provider carried PKCE (S256), state and nonce, and no verifier.
    authorize = next(url for url in watched.urls if "/oauth2/authorize" in url)
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["state"] and query["nonce"] and "code_verifier" not in query
    assert query["redirect_uri"] == [f"{served.base_url}/login/oidc/callback"]
    person = _principals(served)["alice@example.org"]
    assert (person["scope"], person["team_id"]) == ("submit", teams.team_a)
    assert person["prefix"].startswith("oidc_")
    # The audit log names the identity provider as the one who made this principal.
    log = served.client.get(
        "/v1/audit-log", headers=served.headers, params={"target": f"key:{person['id']}"}
    ).json()["data"]
    created = [entry for entry in log if entry["action"] == "key.created"]
    assert [entry["actor"]["kind"] for entry in created] == ["identity_provider"], log
    assert created[0]["detail"]["kind"] == "user"
    watched.close()


def test_a_forged_or_replayed_callback_is_refused(teams: Teams) -> None:
    served = teams.served
    with _client(served) as client:
        callback = _to_provider(client, "alice")
        forged = callback.replace("state=", "state=x")
        refused = client.get(forged)
        assert refused.status_code == 400 and "did not start in this browser" in refused.text
        # The sign-in was taken by the forged try: the genuine callback cannot use it now.
        assert client.get(callback).status_code == 400
    with _client(served) as client:
        callback = _to_provider(client, "alice")
        with _client(served) as other:  # another browser, without this sign-in's cookie
            assert other.get(callback).status_code == 400
        stolen = client.cookies.get("memaudit_oidc")
        assert client.get(callback).status_code == 200
        assert client.cookies.get("memaudit_session")
        with _client(served) as replay:
            replay.cookies.set("memaudit_oidc", stolen)
            assert replay.get(callback).status_code == 400  # single use


def test_an_id_token_for_another_nonce_is_refused(teams: Teams) -> None:
    served = teams.served
    database = served.data_root.parent / "data" / "memaudit.db"
    with _client(served) as client:
        callback = _to_provider(client, "alice")
        engine = create_engine(f"sqlite:///{database}")
        with engine.begin() as connection:
            state, nonce, verifier = connection.execute(
                text("SELECT state, nonce, code_verifier FROM oidc_sign_ins")
            ).one()
            # What went to the provider: this state and nonce, and the verifier's S256 hash.
            sent = parse_qs(urlsplit(teams.last_authorize).query)
            assert sent["state"] == [state] and sent["nonce"] == [nonce]
            assert sent["code_challenge"] == [create_s256_code_challenge(verifier)]
            # As if the code belonged to another sign-in:
            changed = connection.execute(text("UPDATE oidc_sign_ins SET nonce = 'another'"))
            assert changed.rowcount == 1
        engine.dispose()
        refused = client.get(callback)
        assert refused.status_code == 401 and "could not be verified" in refused.text
        assert not client.cookies.get("memaudit_session")


@pytest.mark.parametrize(
    ("sub", "reason"),
    [
        ("no-role", "no role that grants access"),
        ("outsider", "in no memaudit team"),
        ("two-teams", "in several memaudit teams (team-a, team-b)"),
    ],
)
def test_claims_without_a_mapped_role_or_one_team_are_refused(
    teams: Teams, sub: str, reason: str
) -> None:
    served = teams.served
    with _client(served) as client:
        refused = client.get(_to_provider(client, sub))
        assert refused.status_code == 403 and reason in refused.text
        assert not client.cookies.get("memaudit_session")
        assert client.get("/v1/audits").status_code == 401
    email = next(person.claims["email"] for person in PEOPLE if person.sub == sub)
    assert email not in _principals(served)  # no principal is made for a refused person


def test_a_person_is_never_a_bearer_key(teams: Teams) -> None:
    served = teams.served
    person = _principals(served)["alice@example.org"]
    for presented in (person["prefix"], person["prefix"] + "x" * 40, "none", person["id"]):
        response = served.client.get("/v1/audits", headers={"Authorization": f"Bearer {presented}"})
        assert response.status_code == 401, presented
    # Even a row given a key's prefix and hash stays refused: authentication checks the kind.
    pretend = "ma_" + "p" * 43
    engine = create_engine(f"sqlite:///{served.data_root.parent / 'data' / 'memaudit.db'}")
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE api_keys SET prefix = :prefix, key_hash = :hash WHERE id = :id"),
            {"prefix": pretend[:12], "hash": hashlib.sha256(pretend.encode()).hexdigest(),
             "id": person["id"]},
        )  # fmt: skip
    engine.dispose()
    response = served.client.get("/v1/audits", headers={"Authorization": f"Bearer {pretend}"})
    assert response.status_code == 401


def test_api_keys_still_sign_in(browser, teams: Teams) -> None:
    served = teams.served
    watched = Watched(browser, 1280)
    page = watched.page
    page.goto(f"{served.base_url}/login?{urlencode({'next': '/audits'})}")
    page.fill("input[name=key]", teams.key_b)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.base_url}/audits", timeout=15000)
    assert teams.audit_b[:8] in page.content() and teams.audit_a[:8] not in page.content()
    watched.close()


def test_revoking_a_person_ends_their_sessions_and_sign_ins(teams: Teams) -> None:
    served = teams.served
    with _client(served) as client:
        assert client.get(_to_provider(client, "alice")).status_code == 200
        assert client.get("/v1/audits").status_code == 200
        person = _principals(served)["alice@example.org"]
        revoked = served.client.delete(f"/v1/keys/{person['id']}", headers=served.headers)
        assert revoked.status_code == 200
        assert client.get("/v1/audits").status_code == 401
        refused = client.get(_to_provider(client, "alice"))
        assert refused.status_code == 403 and "revoked" in refused.text


def test_refused_sign_ins_are_throttled_like_bad_keys(teams: Teams) -> None:
    """Last in this module: it leaves this client throttled."""
    served = teams.served
    with _client(served) as client:
        for _attempt in range(30):
            refused = client.get("/login/oidc/callback", params={"code": "c", "state": "s"})
            if refused.status_code == 429:
                break
            assert refused.status_code == 400
        assert refused.status_code == 429 and "too many failed" in refused.text
        assert int(refused.headers["retry-after"]) > 0
