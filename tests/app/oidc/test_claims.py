"""The rule from claims to a scope and a team: roles add up to the highest mapped scope, the
teams claim must name exactly one service team, and nothing defaults (never to admin)."""

from __future__ import annotations

import pytest

from app.oidc.claims import ClaimRules, SignInRefused, claim_values, grant_from_claims
from core.config import Settings

RULES = ClaimRules(
    "roles", {"viewer": "read", "auditor": "submit", "platform": "admin"}, "groups", "memaudit-"
)
TEAMS = ["vision", "speech"]


def _grant(roles: object, groups: object) -> tuple[str, str]:
    grant = grant_from_claims({"roles": roles, "groups": groups}, RULES, TEAMS)
    return grant.scope, grant.team_name


def test_roles_add_up_to_the_highest_mapped_scope() -> None:
    assert _grant(["viewer"], ["memaudit-vision"]) == ("read", "vision")
    assert _grant(["viewer", "auditor", "staff"], ["memaudit-vision"]) == ("submit", "vision")
    assert _grant("platform", "memaudit-speech") == ("admin", "speech")  # one string, not a list


def test_only_prefixed_groups_that_name_a_team_count() -> None:
    groups = ["vision", "memaudit-unknown", "everyone", "memaudit-speech"]
    assert _grant(["viewer"], groups) == ("read", "speech")


@pytest.mark.parametrize(
    ("roles", "groups", "reason"),
    [
        ([], ["memaudit-vision"], "no role that grants access"),
        (["admin", "staff"], ["memaudit-vision"], "no role that grants access"),
        (None, ["memaudit-vision"], "no role"),
        ([{"name": "platform"}], ["memaudit-vision"], "no role"),  # not a string: ignored
        (["auditor"], [], "in no memaudit team"),
        (["auditor"], ["vision"], "in no memaudit team"),  # the prefix is required
        (["platform"], ["memaudit-vision", "memaudit-speech"], "several memaudit teams"),
    ],
)
def test_a_person_without_a_mapped_role_or_one_team_is_refused(
    roles: object, groups: object, reason: str
) -> None:
    with pytest.raises(SignInRefused, match=reason) as refused:
        _grant(roles, groups)
    assert refused.value.status_code == 403


def test_claim_values_read_lists_and_strings_only() -> None:
    assert claim_values({"r": ["a", 1, "b"]}, "r") == ["a", "b"]
    assert claim_values({"r": "a"}, "r") == ["a"]
    assert claim_values({"r": {"a": 1}}, "r") == [] == claim_values({}, "r")


def test_settings_refuse_a_role_map_that_names_no_scope(tmp_path) -> None:
    base = {
        "data_dir": tmp_path,
        "oidc_issuer": "https://id.example.org",
        "oidc_client_id": "c",
        "oidc_team_prefix": "memaudit-",
    }
    assert Settings(**base, oidc_role_scopes="a=read, b=admin").oidc_role_scope_map == {
        "a": "read",
        "b": "admin",
    }
    for bad in ("a=owner", "a", "=read", "a=read,a=admin"):
        with pytest.raises(ValueError, match="MEMAUDIT_OIDC_ROLE_SCOPES"):
            Settings(**base, oidc_role_scopes=bad)
    with pytest.raises(ValueError, match="CLIENT_ID"):
        Settings(data_dir=tmp_path, oidc_issuer="https://id.example.org", oidc_team_prefix="m-")
    with pytest.raises(ValueError, match="openid"):
        Settings(**base, oidc_scopes="email")


@pytest.mark.parametrize("prefix", ["", "  "])
def test_settings_refuse_an_issuer_without_a_team_prefix(tmp_path, prefix: str) -> None:
    """Without a prefix any group named like a team would grant it, in every environment."""
    base = {"data_dir": tmp_path, "oidc_issuer": "https://id.example.org", "oidc_client_id": "c"}
    with pytest.raises(ValueError, match="MEMAUDIT_OIDC_TEAM_PREFIX"):
        Settings(**base, oidc_team_prefix=prefix)
    assert Settings(**base, oidc_team_prefix="memaudit-").oidc_team_prefix == "memaudit-"
