"""Teams and their keys (admin scope): who owns what, and which models and data they may audit."""

from __future__ import annotations

from fastapi import APIRouter

from app import teams
from app.deps import AdminKey, SessionDep, SettingsDep
from app.keys import create_key_row, find_key, list_keys, revoke_key
from core.errors import ApiError
from core.models import ApiKey
from core.schemas import (
    KeyCreate,
    KeyCreated,
    KeyPublic,
    KeysPublic,
    KeyUpdate,
    TeamCreate,
    TeamPublic,
    TeamsPublic,
    TeamUpdate,
)

router = APIRouter(tags=["teams"])


@router.get("/v1/teams", response_model=TeamsPublic)
def list_all(session: SessionDep, _key: AdminKey) -> TeamsPublic:
    rows = teams.list_teams(session)
    return TeamsPublic(data=[TeamPublic.model_validate(t) for t in rows], count=len(rows))


@router.post("/v1/teams", response_model=TeamPublic, status_code=201)
def create(
    body: TeamCreate, session: SessionDep, settings: SettingsDep, _key: AdminKey
) -> TeamPublic:
    team = teams.create_team(session, settings, body.name, **body.model_dump(exclude={"name"}))
    return TeamPublic.model_validate(team)


@router.patch("/v1/teams/{team_id}", response_model=TeamPublic)
def update(
    team_id: str, body: TeamUpdate, session: SessionDep, settings: SettingsDep, _key: AdminKey
) -> TeamPublic:
    team = teams.get_team(session, team_id)
    return TeamPublic.model_validate(teams.update_team(session, settings, team, **dict(body)))


def _find_key(session: SessionDep, key_id: str) -> ApiKey:
    try:
        return find_key(session, key_id)
    except LookupError:
        raise ApiError(404, "not_found", f"no key {key_id!r}") from None


@router.get("/v1/keys", response_model=KeysPublic)
def keys(session: SessionDep, _key: AdminKey) -> KeysPublic:
    rows = list_keys(session)
    return KeysPublic(data=[KeyPublic.model_validate(k) for k in rows], count=len(rows))


@router.post("/v1/keys", response_model=KeyCreated, status_code=201)
def create_key(body: KeyCreate, session: SessionDep, key: AdminKey) -> KeyCreated:
    team_id = teams.named_team(session, body.team).id if body.team else key.team_id
    secret, row = create_key_row(session, body.name, body.scope, team_id)
    session.commit()
    return KeyCreated.model_validate({**KeyPublic.model_validate(row).model_dump(), "key": secret})


@router.patch("/v1/keys/{key_id}", response_model=KeyPublic)
def assign(key_id: str, body: KeyUpdate, session: SessionDep, _key: AdminKey) -> KeyPublic:
    team = teams.named_team(session, body.team)
    return KeyPublic.model_validate(teams.assign_key(session, _find_key(session, key_id), team))


@router.delete("/v1/keys/{key_id}", response_model=KeyPublic)
def revoke(key_id: str, session: SessionDep, _key: AdminKey) -> KeyPublic:
    """Revoke a key: it fails at once, and its browser sessions end with it."""
    row = revoke_key(session, _find_key(session, key_id).id)
    session.commit()
    return KeyPublic.model_validate(row)
