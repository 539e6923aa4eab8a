"""Database engine and sessions, one `Database` per process and configuration."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


def utcnow() -> datetime:
    """Naive UTC: stored the same way on SQLite and PostgreSQL, so comparisons agree."""
    return datetime.now(UTC).replace(tzinfo=None)


def finite_only(value: Any) -> Any:
    """Plain JSON: a non-finite number becomes null, what a missing number is everywhere."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): finite_only(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_only(item) for item in value]
    return value


def json_text(value: Any) -> str:
    """A JSON column's text as both databases read it. Python writes NaN and infinities as bare
    `NaN` and `Infinity`, which PostgreSQL refuses (the whole write fails) and SQLite's JSON
    functions cannot parse (sorting or comparing by that field fails): each is stored as null,
    what a number that is not there reads as everywhere else."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:  # rare: a score undefined for some record
        return json.dumps(finite_only(value), allow_nan=False)


def _tune_sqlite(engine: Engine) -> None:
    # The API and the worker write the same file: WAL lets readers go on, and a
    # generous busy timeout turns lock contention into waiting rather than errors.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL stays consistent through any crash and loses at most the last
        # commits on power loss; FULL fsyncs every commit, which was most of a batch write.
        cursor.execute("PRAGMA synchronous=NORMAL")
        # 64 MiB of pages: the result table's indexes stay in memory well past a million rows.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


# The API runs its sync routes on up to 40 threads (anyio's default), each holding a session:
# a smaller pool made requests queue for a connection under load, and time out at 30 s.
POOL = {"pool_size": 10, "max_overflow": 30}


def upsert_insert(dialect: str):  # type: ignore[no-untyped-def]
    """The INSERT construct with ON CONFLICT for this dialect (both databases memaudit runs on)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=json_text,
            **POOL,
        )
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, json_serializer=json_text, **POOL)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
