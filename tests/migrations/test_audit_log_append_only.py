"""The audit log is append-only in the database itself: its triggers refuse UPDATE and DELETE
(and TRUNCATE on PostgreSQL) to anyone connected, through the migrated schema (the table's
owner could still drop them: README, "Audit log");
a downgrade that would drop its entries is refused unless they are let go explicitly."""

from __future__ import annotations

import uuid

import pytest
from alembic.util import CommandError
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DatabaseError

from app.migrate import downgrade, upgrade
from core.audit_log import Actor, acting_as, record
from core.db import Database
from core.models import AuditLogEntry

REFUSED = r"audit_log is append-only"
ALLOW_DROP = "MEMAUDIT_MIGRATE_DROP_AUDIT_LOG"


def _write_entry(url: str) -> int:
    db = Database(url)
    try:
        with db.session() as session, acting_as(session, Actor(kind="cli", name="operator")):
            entry = record(session, "team.created", "team", "t1", {"name": "one"})
            session.flush()
            return entry.id
    finally:
        db.dispose()


def _refuses_changes(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
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
    # A downgrade would drop the log: refused while it holds entries, naming what to do.
    monkeypatch.delenv(ALLOW_DROP, raising=False)
    with pytest.raises(CommandError, match=rf"audit_log holds 2 entries.*export.*{ALLOW_DROP}=1"):
        downgrade(url, "0013")
    engine = create_engine(url)
    with engine.begin() as connection:
        assert connection.scalar(text("SELECT count(*) FROM audit_log")) == 2
    engine.dispose()
    monkeypatch.setenv(ALLOW_DROP, "1")  # exported: the entries may go
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


def test_sqlite_refuses_update_and_delete(tmp_path, monkeypatch) -> None:
    _refuses_changes(f"sqlite:///{tmp_path / 'm.db'}", monkeypatch)


@pytest.mark.postgres
def test_postgres_refuses_update_delete_and_truncate(postgres_url, monkeypatch) -> None:
    _refuses_changes(postgres_url, monkeypatch)


@pytest.mark.postgres
def test_postgres_readme_roles_keep_the_service_role_from_tampering(postgres_url) -> None:
    """README's two-role recipe: the role the service connects as may read and append, but
    neither change an entry nor switch the triggers off, since it does not own the table."""
    suffix = uuid.uuid4().hex[:8]
    owner, app = f"memaudit_owner_{suffix}", f"memaudit_app_{suffix}"
    admin = make_url(postgres_url)
    owner_url, app_url = (
        admin.set(username=role, password="pw").render_as_string(hide_password=False)
        for role in (owner, app)
    )
    root = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with root.connect() as connection:
            connection.execute(text(f"CREATE ROLE {owner} LOGIN PASSWORD 'pw'"))
            connection.execute(text(f"CREATE ROLE {app} LOGIN PASSWORD 'pw' NOSUPERUSER"))
            connection.execute(text(f"GRANT ALL ON SCHEMA public TO {owner}"))
            connection.execute(text(f"ALTER DATABASE {admin.database} OWNER TO {owner}"))
        engine = create_engine(owner_url)
        with engine.begin() as connection:
            for privilege in (
                "SELECT, INSERT, UPDATE, DELETE ON TABLES",
                "USAGE, SELECT ON SEQUENCES",
            ):
                connection.execute(
                    text(
                        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
                        f"GRANT {privilege} TO {app}"
                    )
                )
        upgrade(owner_url)
        with engine.begin() as connection:
            connection.execute(text(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {app}"))
        engine.dispose()

        entry_id = _write_entry(app_url)  # appending is what the service does
        engine = create_engine(app_url)
        try:
            for statement in (
                "UPDATE audit_log SET actor_name = 'someone else' WHERE id = :id",
                "DELETE FROM audit_log WHERE id = :id",
                "TRUNCATE audit_log",
                "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_or_delete",
                "DROP TRIGGER audit_log_no_update_or_delete ON audit_log",
                "DROP TABLE audit_log",
                "SET session_replication_role = replica",
            ):
                with pytest.raises(DatabaseError), engine.begin() as connection:
                    connection.execute(text(statement), {"id": entry_id})
            with engine.begin() as connection:
                assert connection.scalar(text("SELECT actor_name FROM audit_log")) == "operator"
        finally:
            engine.dispose()
    finally:
        with root.connect() as connection:
            connection.execute(text(f"ALTER DATABASE {admin.database} OWNER TO CURRENT_USER"))
        root.dispose()
        # The database goes with the fixture; its objects owned by the roles go first.
        cleanup = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with cleanup.connect() as connection:
            for role in (owner, app):
                connection.execute(text(f"DROP OWNED BY {role} CASCADE"))
                connection.execute(text(f"DROP ROLE {role}"))
        cleanup.dispose()
