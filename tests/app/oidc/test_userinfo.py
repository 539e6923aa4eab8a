"""A provider that keeps roles and groups out of its ID tokens (many do: their size, or by
configuration) still signs people in: the two claims are read from its userinfo endpoint, only
when the token lacks them, and only from an answer about the token's own subject."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from oidc_provider_mock import _app as provider_internals
from sqlalchemy import select

from core.models import ApiKey, KeyKind
from tests.app.oidc.conftest import Dashboard, Provider, start_sign_in

MAPPED = ("roles", "groups")


@pytest.fixture
def lean_id_tokens(monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict]:
    """ID tokens without the roles and groups claims; the userinfo endpoint keeps them."""
    claims_of = provider_internals._user_claims_for_scope

    def without_mapped(_self: object, user: object, scope: str) -> dict:
        return {k: v for k, v in claims_of(user, scope).items() if k not in MAPPED}

    monkeypatch.setattr(provider_internals.OpenIDCode, "generate_user_info", without_mapped)
    return claims_of


def _people(dashboard: Dashboard) -> list[ApiKey]:
    with dashboard.client.app.state.db.session() as session:
        return list(session.scalars(select(ApiKey).where(ApiKey.kind == KeyKind.USER)))


def test_roles_and_groups_missing_from_the_id_token_are_read_from_userinfo(
    dashboard: Callable[..., Dashboard], provider: Provider, lean_id_tokens: Callable
) -> None:
    made = dashboard()
    landed = made.client.get(start_sign_in(made.client))
    assert landed.status_code == 200 and "Signed in" in landed.text, landed.text
    assert "/userinfo" in provider.requests
    (alice,) = _people(made)
    assert (alice.team_id, alice.scope) == ("vision", "submit")


def test_a_token_that_has_them_needs_no_userinfo_request(
    dashboard: Callable[..., Dashboard], provider: Provider
) -> None:
    made = dashboard()
    assert made.client.get(start_sign_in(made.client)).status_code == 200
    assert "/userinfo" not in provider.requests
    assert [person.team_id for person in _people(made)] == ["vision"]


def test_a_userinfo_answer_about_another_subject_is_refused(
    dashboard: Callable[..., Dashboard],
    provider: Provider,
    lean_id_tokens: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A provider (or whatever answers at its userinfo URL) that names someone else: nothing
    of it is taken, and nobody is signed in."""

    def someone_else(user: object, scope: str) -> dict:
        return {**lean_id_tokens(user, scope), "sub": "mallory", "groups": ["memaudit-vision"]}

    monkeypatch.setattr(provider_internals, "_user_claims_for_scope", someone_else)
    made = dashboard()
    refused = made.client.get(start_sign_in(made.client))
    assert refused.status_code == 401
    assert "/userinfo" in provider.requests and _people(made) == []


def test_a_failing_userinfo_endpoint_leaves_the_token_alone_to_judge(
    dashboard: Callable[..., Dashboard],
    provider: Provider,
    lean_id_tokens: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The two claims can only grant: when the endpoint fails, the person is judged on the ID
    token (here refused, for naming no role), not turned away as unverified."""

    def broken(user: object, scope: str) -> dict:
        raise RuntimeError("the directory is down")

    monkeypatch.setattr(provider_internals, "_user_claims_for_scope", broken)
    made = dashboard()
    refused = made.client.get(start_sign_in(made.client))
    assert refused.status_code == 403 and "no role that grants access" in refused.text
    assert "/userinfo" in provider.requests and _people(made) == []
