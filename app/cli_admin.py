"""`memaudit keys` and `memaudit teams`: keys and teams made, listed, moved and revoked on the
database directly, for the operator at the host."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from core.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@contextmanager
def operator_session(settings: Settings) -> Iterator[Session]:
    """A session whose changes the audit log records as the operator's at this host (`cli`)."""
    from core.audit_log import bind_actor, cli_actor
    from core.db import Database

    with Database(settings.database_url).session() as session:
        bind_actor(session, cli_actor())
        yield session


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from app.keys import create_key
    from app.teams import named_team
    from core.errors import ApiError
    from core.models import DEFAULT_TEAM

    try:
        with operator_session(settings) as session:
            team = named_team(session, args.team or DEFAULT_TEAM)
            key = create_key(session, args.name, args.scope, team.id)
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(key)
    return 0


def cmd_keys_assign(settings: Settings, args: argparse.Namespace) -> int:
    from app.keys import find_key
    from app.teams import assign_key, named_team
    from core.errors import ApiError

    try:
        with operator_session(settings) as session:
            key = assign_key(session, find_key(session, args.key), named_team(session, args.team))
            print(f"key {key.prefix} ({key.name}) now belongs to team {args.team}")
    except (ApiError, LookupError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    return 0


def cmd_teams_create(settings: Settings, args: argparse.Namespace) -> int:
    from app.teams import create_team
    from core.errors import ApiError

    try:
        with operator_session(settings) as session:
            team = create_team(
                session,
                settings,
                args.name,
                model_folders=args.models,
                data_folders=args.data,
                mlflow_models=args.mlflow,
                hf_repos=args.hf,
                chat_endpoints=args.chat,
                wandb_artifacts=args.wandb,
            )
            print(f"team {team.name} ({team.id})")
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def cmd_teams_list(settings: Settings, _args: argparse.Namespace) -> int:
    from app.teams import list_teams
    from core.db import Database

    db = Database(settings.database_url)
    with db.session() as session:
        for team in list_teams(session):
            print(
                f"{team.name}: models {team.model_folders}, data {team.data_folders}, "
                f"mlflow {team.mlflow_models}, hf {team.hf_repos}, chat {team.chat_endpoints}, "
                f"wandb {team.wandb_artifacts}"
            )
    return 0


def cmd_keys_list(settings: Settings, _args: argparse.Namespace) -> int:
    from app.keys import list_keys
    from core.db import Database

    db = Database(settings.database_url)
    with db.session() as session:
        rows = list_keys(session)
        print(
            f"{'id':32}  {'prefix':12}  {'scope':6}  {'team':12}  {'created (UTC)':19}  "
            f"{'last used':19}  name"
        )
        for key in rows:
            used = key.last_used_at.strftime("%Y-%m-%d %H:%M:%S") if key.last_used_at else "never"
            state = " (revoked)" if key.revoked_at else ""
            print(
                f"{key.id:32}  {key.prefix:12}  {key.scope:6}  {key.team_id:12}  "
                f"{key.created_at:%Y-%m-%d %H:%M:%S}  {used:19}  {key.name}{state}"
            )
    return 0


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from app.keys import revoke_key

    try:
        with operator_session(settings) as session:
            key = revoke_key(session, args.key)
            print(f"revoked {key.id} ({key.name}, {key.scope})")
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
