"""Teams: who owns what, and which models and data a team's keys may audit.

A key reads and acts on its own team's audits, datasets and policies; an admin key on every
team's. Model folders, data folders, MLflow model names, Hugging Face repositories and W&B
artifact collections are
granted per team, since auditing another team's private fine-tune is exactly the extraction
this service measures. Every check here happens at submit and again in the worker at load.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.config import Settings
from core.confinement import Root
from core.inspection import chat_endpoints, hf_models, mlflow_models, wandb_models
from core.models import EVERYTHING, ApiKey, Team


class NotGranted(ValueError):
    """A model or data source outside the team's grants."""


@dataclass(frozen=True)
class Grants:
    """What one team (or an admin key: everything) may audit."""

    team_id: str
    model_folders: tuple[str, ...]
    data_folders: tuple[str, ...]
    mlflow_models: tuple[str, ...]
    hf_repos: tuple[str, ...]
    chat_endpoints: tuple[str, ...] = ()
    wandb_artifacts: tuple[str, ...] = ()  # globs over `<entity>/<project>/<collection>`

    @classmethod
    def of(cls, team: Team) -> Grants:
        return cls(
            team.id,
            tuple(team.model_folders or ()),
            tuple(team.data_folders or ()),
            tuple(team.mlflow_models or ()),
            tuple(team.hf_repos or ()),
            tuple(team.chat_endpoints or ()),
            tuple(team.wandb_artifacts or ()),
        )

    @classmethod
    def everything(cls, team_id: str) -> Grants:
        return cls(team_id, *[(EVERYTHING,)] * 6)

    def model_roots(self, settings: Settings) -> list[Root]:
        return _folders(self.model_folders, settings.model_root_paths)

    def data_roots(self, settings: Settings) -> list[Root]:
        return _folders(self.data_folders, settings.data_root_paths)

    def check_mlflow(self, name: str) -> None:
        if not _matches(name, self.mlflow_models):
            raise NotGranted(f"registered model {name!r} is not granted to this team")

    def check_hf(self, repo: str) -> None:
        if not _matches(repo, self.hf_repos):
            raise NotGranted(f"Hugging Face repository {repo!r} is not granted to this team")

    def check_wandb(self, path: str) -> None:
        if not _matches(path, self.wandb_artifacts):
            raise NotGranted(f"W&B artifact collection {path!r} is not granted to this team")

    def check_endpoint(self, model_at_url: str) -> None:
        if not _matches(model_at_url, self.chat_endpoints):
            raise NotGranted(f"chat endpoint model {model_at_url!r} is not granted to this team")


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def _holders(folder: Path, roots: Sequence[Path]) -> list[Path]:
    """The roots a folder lies inside, lexically (the walk beneath them is confinement's)."""
    return [root for root in roots if folder.is_relative_to(root)]


def _folders(granted: Sequence[str], roots: list[Path]) -> list[Root]:
    """The granted folders that still lie inside the configured roots, each below the innermost
    root that holds it: confinement reaches it from there without following any link."""
    if EVERYTHING in granted:
        return [Root(root) for root in roots]
    found = []
    for folder in (Path(os.path.abspath(folder)) for folder in granted):
        holders = _holders(folder, roots)
        if holders:
            base = max(holders, key=lambda root: len(root.parts))
            found.append(Root(base, folder.relative_to(base).parts))
    return found


@dataclass(frozen=True)
class Owner:
    """Who an audit is submitted for: a key of a team, or a policy acting for its team."""

    team_id: str
    grants: Grants
    key: ApiKey | None = None

    @property
    def admin(self) -> bool:
        return self.key is not None and self.key.is_admin

    def sees(self, team_id: str) -> bool:
        return self.admin or team_id == self.team_id


def check_model_grant(grants: Grants, uri: str) -> None:
    """Registry models by name or repository, endpoint models by `<model>@<base URL>`;
    folders are confined by `model_roots`."""
    if uri.startswith(hf_models.PREFIX):
        grants.check_hf(hf_models.parse_uri(uri)[0])
    elif uri.startswith(mlflow_models.PREFIX):
        grants.check_mlflow(mlflow_models.parse_uri(uri)[0])
    elif uri.startswith(wandb_models.PREFIX):
        grants.check_wandb(wandb_models.parse_uri(uri).path)
    elif chat_endpoints.is_endpoint(uri):
        grants.check_endpoint(uri[len(chat_endpoints.PREFIX) :])


def grants_for(session: Session, team_id: str, *, admin: bool = False) -> Grants:
    if admin:
        return Grants.everything(team_id)
    team = session.get(Team, team_id)
    if team is None:  # a deleted team grants nothing
        return Grants(team_id, (), (), (), ())
    return Grants.of(team)


def key_owner(session: Session, key: ApiKey) -> Owner:
    return Owner(key.team_id, grants_for(session, key.team_id, admin=key.is_admin), key)


def team_owner(session: Session, team_id: str) -> Owner:
    return Owner(team_id, grants_for(session, team_id))


def submitter_grants(session: Session, team_id: str, key_id: str | None) -> Grants:
    """The grants an audit runs under in the worker: those of the key that submitted it (an
    admin key's are everything), or its team's for a policy's audit."""
    key = session.get(ApiKey, key_id) if key_id else None
    admin = key is not None and key.is_admin and key.revoked_at is None
    return grants_for(session, team_id, admin=admin)


def visible(query: Select[Any], column: Any, key: ApiKey) -> Select[Any]:
    """Restrict a query to the rows the key's team owns; an admin key sees every team's."""
    return query if key.is_admin else query.where(column == key.team_id)


def can_see(key: ApiKey, team_id: str) -> bool:
    return key.is_admin or key.team_id == team_id


def team_by_name(session: Session, name: str) -> Team | None:
    return session.scalar(select(Team).where(Team.name == name))


def check_folders(folders: Sequence[str], roots: Sequence[Path], kind: str) -> list[str]:
    """Grantable folders: `*`, or absolute folders inside the configured roots."""
    checked = []
    for folder in folders:
        if folder == EVERYTHING:
            checked.append(folder)
            continue
        path = Path(os.path.abspath(folder)) if folder.startswith("/") else None
        if path is None or not _holders(path, roots):
            allowed = ", ".join(str(root) for root in roots)
            raise ValueError(f"{kind} folder {folder!r} is not inside the {kind} roots ({allowed})")
        checked.append(str(path))
    return checked
