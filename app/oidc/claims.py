"""From an ID token's claims to a scope and a team: pure, so every rule is tested directly.

The rule: the roles claim's values that the role map names give scopes, and the person gets
the highest of them (roles add up: a viewer who is also an auditor may submit). The teams
claim's values, less the configured prefix, that name a service team give the team: exactly
one is needed, since a principal belongs to one team. No mapped role, no known team or
several known teams: the sign-in is refused. Nothing defaults, and never to admin.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from core.config import SCOPE_NAMES


class SignInRefused(Exception):
    """A sign-in that must not go on; the message is shown to the person as it is."""

    def __init__(self, message: str, status_code: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class ClaimRules:
    """How claims map onto scopes and teams (from the MEMAUDIT_OIDC_* settings)."""

    roles_claim: str
    role_scopes: Mapping[str, str]
    teams_claim: str
    team_prefix: str = ""


@dataclass(frozen=True)
class Grant:
    scope: str
    team_name: str


def claim_values(claims: Mapping[str, Any], name: str) -> list[str]:
    """A claim as a list of strings: identity providers send a list, or one string."""
    value = claims.get(name)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def scope_from_roles(roles: Collection[str], role_scopes: Mapping[str, str]) -> str | None:
    granted = {role_scopes[role] for role in roles if role in role_scopes}
    return max(granted, key=SCOPE_NAMES.index) if granted else None


def team_from_groups(
    groups: Collection[str], prefix: str, known_teams: Collection[str]
) -> list[str]:
    """The service teams the groups name (sorted): values with the prefix, less the prefix."""
    named = {group[len(prefix) :] for group in groups if group.startswith(prefix)}
    return sorted(named & set(known_teams))


def grant_from_claims(
    claims: Mapping[str, Any], rules: ClaimRules, known_teams: Collection[str]
) -> Grant:
    """The scope and team a person signs in with, or SignInRefused saying what is missing."""
    scope = scope_from_roles(claim_values(claims, rules.roles_claim), rules.role_scopes)
    if scope is None:
        raise SignInRefused(
            f"Your account has no role that grants access to memaudit (claim "
            f"{rules.roles_claim!r}). Ask your administrator for one of: "
            f"{', '.join(sorted(rules.role_scopes)) or 'no role is configured yet'}."
        )
    teams = team_from_groups(
        claim_values(claims, rules.teams_claim), rules.team_prefix, known_teams
    )
    if not teams:
        raise SignInRefused(
            f"Your account is in no memaudit team (claim {rules.teams_claim!r} names none "
            "of this service's teams). Ask your administrator to add you to one."
        )
    if len(teams) > 1:
        raise SignInRefused(
            f"Your account is in several memaudit teams ({', '.join(teams)}); a sign-in "
            "belongs to one team. Ask your administrator to leave you in one."
        )
    return Grant(scope, teams[0])
