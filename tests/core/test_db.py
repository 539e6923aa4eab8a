"""The database layer: what JSON columns store on both databases memaudit runs on."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from app.migrate import upgrade
from core.db import Database
from core.models import Audit, SampleResult

UNDEFINED = {"mean_loss": math.nan, "bounds": [1.5, math.inf, -math.inf], "auc": 0.75}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_number_that_is_not_finite_is_stored_as_null(backend, tmp_path, request) -> None:
    """PostgreSQL refuses a bare NaN in JSON (the audit's write would fail) and SQLite's JSON
    functions cannot read one (sorting records by that value would fail): null instead."""
    url = (
        f"sqlite:///{tmp_path / 'json.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    upgrade(url)
    db = Database(url)
    try:
        with db.session() as session:
            audit = Audit(
                status="succeeded",
                model_uri="path:/models/m",
                dataset_uri="path:/data/d.jsonl",
                dataset_sha256="0" * 64,
                n_samples=3,
                checks=[],
                summary={"loss": UNDEFINED},
            )
            session.add(audit)
            session.flush()
            for index, score in enumerate([0.5, math.nan, -math.inf]):
                values = {"score": score, "loss": {"value": score}, "n": index}
                session.add(
                    SampleResult(
                        audit_id=audit.id,
                        check="loss",
                        sample_index=index,
                        sample_id=f"r{index}",
                        values=values,
                    )
                )
            audit_id = audit.id
        with db.session() as session:
            summary = session.get(Audit, audit_id).summary["loss"]
            assert summary == {"mean_loss": None, "bounds": [1.5, None, None], "auc": 0.75}
            score = SampleResult.values["score"].as_float()
            ordered = session.execute(
                select(SampleResult.sample_index, score)
                .where(SampleResult.audit_id == audit_id)
                .order_by(SampleResult.values["n"].as_float().desc())
            ).all()
            assert [tuple(row) for row in ordered] == [(2, None), (1, None), (0, 0.5)]
            nested = session.scalar(
                select(SampleResult.values[("loss", "value")].as_float()).where(
                    SampleResult.audit_id == audit_id, SampleResult.sample_index == 1
                )
            )
            assert nested is None
    finally:
        db.dispose()
