"""The audit log is append-only in the database itself: its triggers refuse UPDATE and DELETE
(and TRUNCATE on PostgreSQL) to anyone connected, through the migrated schema."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DatabaseError

from app.migrate import downgrade, upgrade
from core.audit_log import Actor, acting_as, record
from core.db import Database
from core.models import AuditLogEntry

REFUSED = r"audit_log is append-only"


def _write_entry(url: str) -> int:
    db = Database(url)
    try:
        with db.session() as session, acting_as(session, Actor(kind="cli", name="operator")):
            entry = record(session, "team.created", "team", "t1", {"name": "one"})
            session.flush()
            return entry.id
    finally:
        db.dispose()


def _refuses_changes(url: str) -> None:
    upgrade(url)
    entry_id = _write_entry(url)
    engine = create_engine(url)
    try:
        for statement in (
            "UPDATE audit_log SET actor_name = 'someone else'",
            "UPDATE audit_log SET detail = '{}' WHERE id = :id",
            "DELETE FROM audit_log WHERE id = :id",
            "DELETE FROM audit_log",
        ):
            with pytest.raises(DatabaseError, match=REFUSED), engine.begin() as connection:
                connection.execute(text(statement), {"id": entry_id})
        if engine.dialect.name == "postgresql":
            with pytest.raises(DatabaseError, match=REFUSED), engine.begin() as connection:
                connection.execute(text("TRUNCATE audit_log"))
        # Through the ORM alike.
        db = Database(url)
        with pytest.raises(DatabaseError, match=REFUSED), db.session() as session:
            session.delete(session.get(AuditLogEntry, entry_id))
        db.dispose()
        with engine.begin() as connection:
            row = connection.execute(text("SELECT actor_name, action FROM audit_log")).one()
            assert tuple(row) == ("operator", "team.created")
            # Appending is what the log is for.
            connection.execute(
                text(
                    "INSERT INTO audit_log (created_at, actor_name, actor_kind, action, "
                    "target_type, target_id, detail) VALUES ('2026-01-01', 'cli', 'cli', "
                    "'key.created', 'key', 'k2', '{}')"
                )
            )
            assert connection.scalar(text("SELECT count(*) FROM audit_log")) == 2
    finally:
        engine.dispose()
    downgrade(url, "0013")  # the table, its triggers (and the PostgreSQL function) go
    engine = create_engine(url)
    with engine.begin() as connection:
        names = "SELECT count(*) FROM {}"
        if engine.dialect.name == "postgresql":
            query = "pg_proc WHERE proname = 'audit_log_refuse_change'"
        else:
            query = "sqlite_master WHERE type = 'trigger'"
        assert connection.scalar(text(names.format(query))) == 0
    engine.dispose()
    upgrade(url)


def test_sqlite_refuses_update_and_delete(tmp_path) -> None:
    _refuses_changes(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_postgres_refuses_update_delete_and_truncate(postgres_url) -> None:
    _refuses_changes(postgres_url)
