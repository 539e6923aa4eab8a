"""Splits: the plain functions behind the split routes. The work is the worker's
(`memaudit.build_split`); here a request is checked, recorded and sent."""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import utcnow
from core.errors import ApiError
from core.models import ApiKey, Split, SplitStatus
from core.schemas import SplitCreate, SplitPublic
from core.submission import resolve_dataset
from core.task_names import BUILD_SPLIT
from core.tenancy import can_see, key_owner

log = logging.getLogger(__name__)


def submit_split(
    session: Session, settings: Settings, celery: Celery, body: SplitCreate, key: ApiKey
) -> Split:
    """Both sets checked as an audit's dataset is (the team's uploads and data folders, the
    limits, a `text` field), the split recorded for the key's team and sent to a worker."""
    owner = key_owner(session, key)
    counts = 0
    for field, uri in (("members", body.members), ("nonmembers", body.nonmembers)):
        dataset = resolve_dataset(session, settings, uri, owner)
        if "text" not in dataset.fields:
            raise ApiError(
                422,
                "missing_dataset_fields",
                f"{field}: a split reads each record's text; {uri} has fields {dataset.fields}",
            )
        if dataset.n_records < 2:
            raise ApiError(
                422, "too_few_records", f"{field}: {uri} has {dataset.n_records} records; 2 or more"
            )
        counts += dataset.n_records
    limit = settings.max_records_per_dataset
    if counts > limit:  # the combined dataset must itself be one a team may audit
        raise ApiError(
            413,
            "limit_exceeded",
            f"the two sets hold {counts} records together; a dataset holds at most {limit} "
            "(MEMAUDIT_MAX_RECORDS_PER_DATASET)",
            {"limit": "max_records_per_dataset", "value": counts},
        )
    split = Split(
        team_id=owner.team_id,
        members_uri=body.members,
        nonmembers_uri=body.nonmembers,
        match=body.match,
        seed=body.seed,
        result={},
        created_by=key.id,
    )
    session.add(split)
    session.commit()
    try:
        celery.send_task(BUILD_SPLIT, args=[split.id], queue=settings.queue)
    except Exception:  # broker down: say so now rather than leave it queued for ever
        log.exception("could not enqueue split %s", split.id)
        split.status, split.finished_at = SplitStatus.FAILED, utcnow()
        split.error = "the task queue could not be reached; submit the split again"
        session.commit()
        raise ApiError(503, "queue_unavailable", split.error, {"split_id": split.id}) from None
    return split


def get_split(session: Session, split_id: str, key: ApiKey) -> Split:
    """A split the key may see; another team's is as missing as one that never was."""
    split = session.get(Split, split_id)
    if split is None or not can_see(key, split.team_id):
        raise ApiError(404, "not_found", f"no split {split_id!r}")
    return split


def to_public(split: Split) -> SplitPublic:
    result = split.result or {}
    return SplitPublic(
        id=split.id,
        status=split.status,
        error=split.error,
        members=split.members_uri,
        nonmembers=split.nonmembers_uri,
        match=split.match,
        seed=split.seed,
        n_members=result.get("n_members"),
        n_nonmembers=result.get("n_nonmembers"),
        before=result.get("before"),
        after=result.get("after"),
        matching=result.get("matching"),
        dataset_uri=f"dataset:{split.dataset_id}" if split.dataset_id else None,
        created_by=split.created_by,
        created_at=split.created_at,
        started_at=split.started_at,
        finished_at=split.finished_at,
    )
