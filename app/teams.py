"""Teams and the keys in them: the plain functions behind the admin routes and the CLI."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.audit_log import changes, record
from core.config import Settings
from core.errors import ApiError
from core.models import ApiKey, BrowserSession, Team
from core.tenancy import check_folders, team_by_name

GRANTS = (
    "model_folders",
    "data_folders",
    "mlflow_models",
    "hf_repos",
    "chat_endpoints",
    "wandb_artifacts",
)


def _grants(team: Team) -> dict[str, list]:
    return {name: list(getattr(team, name) or []) for name in GRANTS}


def _folders(settings: Settings, models: Sequence[str], data: Sequence[str]) -> tuple[list, list]:
    try:
        return (
            check_folders(models, settings.model_root_paths, "model"),
            check_folders(data, settings.data_root_paths, "data"),
        )
    except ValueError as exc:
        raise ApiError(422, "invalid_grant", str(exc)) from None


def create_team(
    session: Session,
    settings: Settings,
    name: str,
    *,
    model_folders: Sequence[str] = (),
    data_folders: Sequence[str] = (),
    mlflow_models: Sequence[str] = (),
    hf_repos: Sequence[str] = (),
    chat_endpoints: Sequence[str] = (),
    wandb_artifacts: Sequence[str] = (),
) -> Team:
    if team_by_name(session, name) is not None:
        raise ApiError(409, "team_exists", f"a team named {name!r} exists")
    models, data = _folders(settings, model_folders, data_folders)
    team = Team(
        name=name,
        model_folders=models,
        data_folders=data,
        mlflow_models=list(mlflow_models),
        hf_repos=list(hf_repos),
        chat_endpoints=list(chat_endpoints),
        wandb_artifacts=list(wandb_artifacts),
    )
    session.add(team)
    session.flush()
    record(session, "team.created", "team", team.id, {"name": name, **_grants(team)})
    session.commit()
    return team


def update_team(
    session: Session,
    settings: Settings,
    team: Team,
    *,
    model_folders: Sequence[str] | None = None,
    data_folders: Sequence[str] | None = None,
    mlflow_models: Sequence[str] | None = None,
    hf_repos: Sequence[str] | None = None,
    chat_endpoints: Sequence[str] | None = None,
    wandb_artifacts: Sequence[str] | None = None,
) -> Team:
    """New grants hold at once: the next submit and the next shard a worker loads read them."""
    before = _grants(team)
    models, data = _folders(
        settings,
        team.model_folders if model_folders is None else model_folders,
        team.data_folders if data_folders is None else data_folders,
    )
    team.model_folders, team.data_folders = models, data
    if mlflow_models is not None:
        team.mlflow_models = list(mlflow_models)
    if hf_repos is not None:
        team.hf_repos = list(hf_repos)
    if chat_endpoints is not None:
        team.chat_endpoints = list(chat_endpoints)
    if wandb_artifacts is not None:
        team.wandb_artifacts = list(wandb_artifacts)
    changed = changes(before, _grants(team))
    if changed:
        record(session, "team.updated", "team", team.id, {"name": team.name, "changed": changed})
    session.commit()
    return team


def get_team(session: Session, id_or_name: str, status: int = 404) -> Team:
    """A team by id or name; an unknown one is a missing page (404), or, named in a request
    body, a bad request (422)."""
    team = session.get(Team, id_or_name) or team_by_name(session, id_or_name)
    if team is None:
        code = "not_found" if status == 404 else "unknown_team"
        raise ApiError(status, code, f"no team {id_or_name!r}")
    return team


def named_team(session: Session, id_or_name: str) -> Team:
    """A team a request body names."""
    return get_team(session, id_or_name, status=422)


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.name)))


def assign_key(session: Session, key: ApiKey, team: Team) -> ApiKey:
    """Move a key to another team: from now on it sees and acts on that team's objects. Its
    browser sessions end (they were signed in to the old team's view)."""
    if key.team_id != team.id:
        detail = {"name": key.name, "changed": {"team": {"from": key.team_id, "to": team.id}}}
        record(session, "key.assigned", "key", key.id, detail)
    key.team_id = team.id
    session.execute(delete(BrowserSession).where(BrowserSession.key_id == key.id))
    session.commit()
    return key
