"""Alembic owns the schema: upgrade, downgrade and upgrade again, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, inspect, text

from app.migrate import downgrade, upgrade
from core.models import Base

TABLES = {
    "api_keys",
    "audit_log",
    "audits",
    "browser_sessions",
    "event_counts",
    "oidc_sign_ins",
    "teams",
    "throttle_windows",
    "audit_policies",
    "callback_deliveries",
    "datasets",
    "notification_channels",
    "notification_deliveries",
    "shards",
    "splits",
    "sample_results",
    "webhook_deliveries",
    "webhook_refusals",
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


def _upgrade_with_rows(url: str) -> None:
    """A 0.1 database with a key, a dataset and an audit moves to teams: all join `default`."""
    upgrade(url, "0004")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO api_keys (id, name, prefix, key_hash, scope, created_at) "
                "VALUES ('k1', 'old', 'ma_old', 'h', 'submit', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO datasets (id, sha256, filename, n_records, size_bytes, fields, "
                "created_by, created_at) VALUES ('ds_1', 'abc', 'd.jsonl', 1, 2, '[]', 'k1', "
                "'2026-01-01')"
            )
        )
    upgrade(url)
    with engine.begin() as connection:
        assert connection.scalar(text("SELECT team_id FROM api_keys")) == "default"
        assert connection.scalar(text("SELECT team_id FROM datasets")) == "default"
        grants = connection.scalar(text("SELECT model_folders FROM teams WHERE id = 'default'"))
        assert "*" in str(grants)
        # Another team may now hold a record of the same bytes.
        connection.execute(
            text(
                "INSERT INTO teams (id, name, model_folders, data_folders, mlflow_models, "
                "hf_repos, chat_endpoints, created_at) "
                "VALUES ('t2', 'two', '[]', '[]', '[]', '[]', '[]', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO datasets (id, team_id, sha256, filename, n_records, size_bytes, "
                "fields, created_at) VALUES ('ds_2', 't2', 'abc', 'd.jsonl', 1, 2, '[]', "
                "'2026-01-01')"
            )
        )
    engine.dispose()


def test_existing_rows_join_the_default_team_on_sqlite(tmp_path) -> None:
    _upgrade_with_rows(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_existing_rows_join_the_default_team_on_postgres(postgres_url) -> None:
    _upgrade_with_rows(postgres_url)


def _audit_without_a_model(url: str) -> None:
    """0008 lets an audit name no model; going back to 0007 keeps its rows, with an empty URI."""
    upgrade(url)
    engine = create_engine(url)
    insert = text(
        "INSERT INTO audits (id, team_id, status, model_uri, model_family, dataset_uri, "
        "dataset_sha256, n_samples, checks, labels, cancel_requested, summary, provenance, "
        "created_at) VALUES ('a1', 'default', 'queued', NULL, NULL, 'dataset:ds_1', 'abc', 3, "
        "'[]', '{}', false, '{}', '{}', '2026-01-01')"
    )
    with engine.begin() as connection:
        connection.execute(insert)
        assert connection.scalar(text("SELECT model_uri FROM audits")) is None
    downgrade(url, "0007")
    with engine.begin() as connection:
        assert connection.execute(text("SELECT model_uri, model_family FROM audits")).one() == (
            "",
            "",
        )
        refused = insert.text.replace("'a1'", "'a2'")
        with pytest.raises(Exception, match=r"(?i)null|constraint"):
            connection.execute(text(refused))
    engine.dispose()


def test_an_audit_without_a_model_on_sqlite(tmp_path) -> None:
    _audit_without_a_model(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_an_audit_without_a_model_on_postgres(postgres_url) -> None:
    _audit_without_a_model(postgres_url)


def _refusals_come_and_go(url: str) -> None:
    """0010 adds the kept refusals; going back to 0008 drops them and nothing else."""
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO webhook_refusals (source, reason, message, delivery_id, event, "
                "received_at) VALUES ('mlflow', 'bad_signature', 'm', 'd-1', NULL, '2026-01-01')"
            )
        )
        assert connection.scalar(text("SELECT count(*) FROM webhook_refusals")) == 1
    downgrade(url, "0008")
    assert "webhook_refusals" not in _tables(url)
    assert "webhook_deliveries" in _tables(url)
    upgrade(url)
    assert "webhook_refusals" in _tables(url)
    engine.dispose()


def test_webhook_refusals_on_sqlite(tmp_path) -> None:
    _refusals_come_and_go(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_webhook_refusals_on_postgres(postgres_url) -> None:
    _refusals_come_and_go(postgres_url)


def _policy_warnings(url: str) -> None:
    """0009 gives every policy a list of warnings, empty for those written before it; going
    back to 0008 drops the column and keeps the policy."""
    upgrade(url, "0008")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_policies (id, name, team_id, source, model_pattern, "
                "dataset_uri, checks, thresholds, on_inconclusive, enabled, created_at, "
                "updated_at) VALUES ('p1', 'old', 'default', 'mlflow', '*', 'dataset:ds_1', "
                "'[]', '[]', 'block', true, '2026-01-01', '2026-01-01')"
            )
        )
    upgrade(url)
    with engine.begin() as connection:
        assert connection.scalar(text("SELECT warnings FROM audit_policies")) in ("[]", [])
    downgrade(url, "0008")
    columns = {c["name"] for c in inspect(engine).get_columns("audit_policies")}
    assert "warnings" not in columns and "on_inconclusive" in columns
    with engine.begin() as connection:
        assert connection.scalar(text("SELECT name FROM audit_policies")) == "old"
    engine.dispose()


def test_policy_warnings_on_sqlite(tmp_path) -> None:
    _policy_warnings(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_policy_warnings_on_postgres(postgres_url) -> None:
    _policy_warnings(postgres_url)


def _wandb_grants(url: str) -> None:
    """0015 grants W&B artifacts to the default team (it holds every registry) and to no team
    an admin made; going back to 0014 drops the column and keeps the teams."""
    upgrade(url, "0014")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO teams (id, name, model_folders, data_folders, mlflow_models, "
                "hf_repos, chat_endpoints, created_at) VALUES ('t2', 'other', '[]', '[]', "
                "'[]', '[]', '[]', '2026-01-01')"
            )
        )
    upgrade(url)
    with engine.begin() as connection:
        rows = connection.execute(text("SELECT id, wandb_artifacts FROM teams ORDER BY id"))
        grants = {team: json.loads(value) if isinstance(value, str) else value
                  for team, value in rows}  # fmt: skip
    assert grants == {"default": ["*"], "t2": []}
    downgrade(url, "0014")
    engine.dispose()
    engine = create_engine(url)
    assert "wandb_artifacts" not in {c["name"] for c in inspect(engine).get_columns("teams")}
    with engine.begin() as connection:
        assert connection.scalar(text("SELECT count(*) FROM teams")) == 2
    engine.dispose()


def test_wandb_grants_on_sqlite(tmp_path) -> None:
    _wandb_grants(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_wandb_grants_on_postgres(postgres_url) -> None:
    _wandb_grants(postgres_url)
