"""Per-record changes between two audits of one dataset: the candidate (first id) against the
baseline (second id), paged, and exported as CSV or Parquet."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from app import record_changes
from app.deps import ReadKey, SessionDep
from app.record_changes import Group
from app.record_changes_export import PARQUET_MEDIA_TYPE, csv_chunks, parquet_chunks
from core.schemas import (
    MAX_DB_INT,
    ChangeGroupPublic,
    ChangePublic,
    ChangesPublic,
    ThresholdPublic,
)

router = APIRouter(prefix="/v1/audits", tags=["audits"])

KindFilter = Annotated[
    str | None,
    Query(
        description="newly_extractable, no_longer_extractable, newly_above_threshold, "
        "no_longer_above_threshold"
    ),
]
CheckFilter = Annotated[str | None, Query(description="extraction or membership")]
MetricFilter = Annotated[
    str | None, Query(description="greedy_extracted, or a membership score (loss, mink_0.2, ...)")
]


def _threshold(found: record_changes.Threshold | None) -> ThresholdPublic | None:
    return None if found is None else ThresholdPublic(**vars(found))


def _group(group: Group) -> ChangeGroupPublic:
    return ChangeGroupPublic(
        kind=group.kind,
        check=group.check,
        metric=group.metric,
        computed=group.computed,
        reason=group.reason,
        count=group.count,
        candidate_threshold=_threshold(group.candidate_threshold),
        baseline_threshold=_threshold(group.baseline_threshold),
    )


@router.get("/{audit_id}/compare/{other_id}", response_model=ChangesPublic)
def compare(
    audit_id: str,
    other_id: str,
    session: SessionDep,
    key: ReadKey,
    kind: KindFilter = None,
    check: CheckFilter = None,
    metric: MetricFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
) -> ChangesPublic:
    """Records whose verdict changed from the baseline (`other_id`) to the candidate
    (`audit_id`): greedy extraction, and each audit's own membership threshold at 1% FPR."""
    comparison = record_changes.open_comparison(session, key, audit_id, other_id)
    groups = record_changes.select_groups(comparison, kind=kind, check=check, metric=metric)
    rows = record_changes.page(session, comparison, groups, limit, offset)
    return ChangesPublic(
        candidate_id=comparison.candidate.id,
        baseline_id=comparison.baseline.id,
        data=[ChangePublic.model_validate(row) for row in rows],
        count=sum(group.count or 0 for group in groups),
        totals=record_changes.totals(comparison),
        groups=[_group(group) for group in comparison.groups],
    )


# Each export format: how pages of rows become bytes, and what they are.
EXPORTS = {
    "csv": (csv_chunks, "text/csv"),
    "parquet": (parquet_chunks, PARQUET_MEDIA_TYPE),
}


@router.get(
    "/{audit_id}/compare/{other_id}/changes.{export_format}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {media_type: {} for _, media_type in EXPORTS.values()},
            "description": "every matching change",
        }
    },
)
def compare_export(
    audit_id: str,
    other_id: str,
    export_format: Literal["csv", "parquet"],
    request: Request,
    session: SessionDep,
    key: ReadKey,
    kind: KindFilter = None,
    check: CheckFilter = None,
    metric: MetricFilter = None,
) -> StreamingResponse:
    """The same rows as the paged API, every page, streamed: CSV, or Parquet with one row group
    per page of 2,000."""
    comparison = record_changes.open_comparison(session, key, audit_id, other_id)
    groups = record_changes.select_groups(comparison, kind=kind, check=check, metric=metric)
    name = f"changes-{comparison.candidate.id}-vs-{comparison.baseline.id}.{export_format}"
    chunks, media_type = EXPORTS[export_format]
    pages = record_changes.iter_pages(request.app.state.db, comparison, groups)
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(chunks(pages), media_type=media_type, headers=headers)
