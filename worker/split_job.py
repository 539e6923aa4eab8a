"""The worker's split task: read both sets under the team's grants, build the split, and store
its report with the combined labelled dataset as one of the team's datasets, in one commit.

A redelivered task runs the split again from the start (nothing is written before the end);
the last write is conditional on the split still running, so it lands once.
"""

from __future__ import annotations

import logging
import os
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from core.config import Settings
from core.db import Database, utcnow
from core.inspection.datasets import (
    DatasetError,
    DatasetInfo,
    inspect_jsonl,
    new_dataset_id,
    open_dataset,
    uploaded_dataset_path,
)
from core.models import Dataset, Split, SplitStatus
from core.tenancy import Grants, submitter_grants
from worker import shard_store
from worker.split_builder import BuiltSplit, SplitError, build_split, read_texts, write_jsonl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """What the split asked for, read once when it is claimed."""

    split: Split  # detached: its team and key, for the uploads it may read
    grants: Grants


def run_split(db: Database, settings: Settings, split_id: str) -> str:
    """Build one split; its final status."""
    request = _claim(db, split_id)
    if request is None:
        return "skipped"
    split = request.split
    try:
        built = _build(db, settings, request)
        dataset_id = _store(db, settings, split, built)
    except (SplitError, DatasetError, FileNotFoundError, PermissionError) as exc:
        report = exc.report if isinstance(exc, SplitError) else None
        return _fail(db, split_id, str(exc), report)
    except Exception as exc:  # recorded, not retried: the same sets would fail the same way
        log.exception("split %s failed", split_id)
        return _fail(db, split_id, f"internal error ({type(exc).__name__}): {exc}", None)
    log.info("split %s built: dataset %s", split_id, dataset_id)
    return SplitStatus.SUCCEEDED


def _claim(db: Database, split_id: str) -> Request | None:
    with db.session() as session:
        claimed = session.execute(
            update(Split)
            .where(
                Split.id == split_id, Split.status.in_([SplitStatus.QUEUED, SplitStatus.RUNNING])
            )
            .values(status=SplitStatus.RUNNING, started_at=utcnow())
        ).rowcount
        session.commit()
        if not claimed:  # gone, or already finished
            return None
        split = session.get_one(Split, split_id)
        grants = submitter_grants(session, split.team_id, split.created_by)
        session.expunge(split)
    return Request(split, grants)


def _build(db: Database, settings: Settings, request: Request) -> BuiltSplit:
    split = request.split

    def upload(dataset_id: str) -> Path | None:
        sha256 = shard_store.upload_sha256(db, split, dataset_id)
        return uploaded_dataset_path(settings.datasets_dir, sha256) if sha256 else None

    roots = request.grants.data_roots(settings)
    sets: list[list[dict[str, Any]]] = []
    for name, uri in (("members", split.members_uri), ("nonmembers", split.nonmembers_uri)):
        with ExitStack() as files:
            path = files.enter_context(open_dataset(uri, upload, roots, settings.file_rules))
            try:
                sets.append(read_texts(path, settings.dataset_limits))
            except DatasetError as exc:
                raise DatasetError(exc.line_no, f"{name} ({uri}): {exc}") from None
    return build_split(sets[0], sets[1], match=split.match, seed=split.seed)


def _store(db: Database, settings: Settings, split: Split, built: BuiltSplit) -> str:
    """The combined dataset kept once per content, like an upload; the team's record of it and
    the split's result committed together."""
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=settings.datasets_dir, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            write_jsonl(built.records, out)
        with open(tmp, "rb") as stream:
            info = inspect_jsonl(stream, validate_all=True, limits=settings.dataset_limits)
        os.chmod(tmp, 0o640)
        os.replace(tmp, uploaded_dataset_path(settings.datasets_dir, info.sha256))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    for attempt in range(2):  # a concurrent first record of the same content: read it again
        try:
            return _commit(db, split, built.report, info)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _commit(db: Database, split: Split, report: dict[str, Any], info: DatasetInfo) -> str:
    with db.session() as session:
        dataset = session.scalar(
            select(Dataset).where(Dataset.team_id == split.team_id, Dataset.sha256 == info.sha256)
        )
        if dataset is None:
            dataset = Dataset(
                id=new_dataset_id(),
                team_id=split.team_id,
                sha256=info.sha256,
                filename=f"split-{split.id}.jsonl",
                n_records=info.n_records,
                size_bytes=info.size_bytes,
                fields=info.fields,
                created_by=split.created_by,
            )
            session.add(dataset)
            session.flush()
        finished = session.execute(
            update(Split)
            .where(Split.id == split.id, Split.status == SplitStatus.RUNNING)
            .values(
                status=SplitStatus.SUCCEEDED,
                result=report,
                dataset_id=dataset.id,
                finished_at=utcnow(),
            )
        ).rowcount
        if not finished:  # another delivery of the task finished it first
            session.rollback()
            return ""
        session.commit()
        return dataset.id


def _fail(db: Database, split_id: str, error: str, report: dict[str, Any] | None) -> str:
    with db.session() as session:
        session.execute(
            update(Split)
            .where(Split.id == split_id, Split.status == SplitStatus.RUNNING)
            .values(
                status=SplitStatus.FAILED,
                error=error,
                result=report or {},
                finished_at=utcnow(),
            )
        )
        session.commit()
    log.warning("split %s failed: %s", split_id, error)
    return SplitStatus.FAILED
