"""The split task runs a split once: a redelivered task after success writes nothing more, and
one whose worker died mid-way (left running) runs again from the start."""

from __future__ import annotations

from app.migrate import upgrade
from core.db import Database
from core.models import DEFAULT_TEAM, Dataset, Split, SplitStatus
from tests.conftest import make_settings, write_jsonl
from tests.worker.engine.test_split_matching import _texts
from worker.split_job import run_split


def test_a_split_is_built_once_and_a_crashed_run_is_run_again(tmp_path) -> None:
    data = tmp_path / "data"
    settings = make_settings(tmp_path / "state", tmp_path / "models", data)
    settings.ensure_dirs()
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    members = write_jsonl(data / "m.jsonl", [{"text": t} for t in _texts(40, 1, 0.5, (12, 30))])
    nonmembers = write_jsonl(data / "n.jsonl", [{"text": t} for t in _texts(40, 2, 0.5, (12, 30))])
    with db.session() as session:
        split = Split(
            team_id=DEFAULT_TEAM,
            members_uri=f"path:{members}",
            nonmembers_uri=f"path:{nonmembers}",
            status=SplitStatus.RUNNING,  # its first worker died
            result={},
        )
        session.add(split)
        session.commit()
        split_id = split.id
    assert run_split(db, settings, split_id) == SplitStatus.SUCCEEDED
    assert run_split(db, settings, split_id) == "skipped"
    with db.session() as session:
        done = session.get_one(Split, split_id)
        assert done.status == SplitStatus.SUCCEEDED and done.error is None
        assert done.result["before"]["reading"] == "no_confound_detected"
        assert session.query(Dataset).count() == 1
        assert session.get_one(Dataset, done.dataset_id).n_records == 80
    assert run_split(db, settings, "f" * 32) == "skipped"
    db.dispose()
