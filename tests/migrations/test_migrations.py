"""Alembic owns the schema: upgrade, downgrade and upgrade again, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from app.migrate import downgrade, upgrade
from app.models import Base

TABLES = {
    "api_keys",
    "audits",
    "audit_policies",
    "callback_deliveries",
    "datasets",
    "shards",
    "sample_results",
    "webhook_deliveries",
    "worker_hosts",
}


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _round_trip(url: str) -> None:
    upgrade(url)
    assert _tables(url) == TABLES
    engine = create_engine(url)
    columns = {t: {c["name"] for c in inspect(engine).get_columns(t)} for t in TABLES}
    indexes = {
        t: {(i["name"], tuple(i["column_names"])) for i in inspect(engine).get_indexes(t)}
        for t in TABLES
    }
    engine.dispose()
    for table in Base.metadata.sorted_tables:  # the migration matches the ORM, column by column
        assert columns[table.name] == {c.name for c in table.columns}, table.name
        expected = {(i.name, tuple(c.name for c in i.columns)) for i in table.indexes}
        assert expected <= indexes[table.name], table.name  # and every index the ORM declares
    downgrade(url)
    assert _tables(url) == set()
    upgrade(url)
    assert _tables(url) == TABLES


def test_sqlite_round_trip(tmp_path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_postgres_round_trip(postgres_url) -> None:
    _round_trip(postgres_url)
