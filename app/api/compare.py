"""Per-record changes between two audits of one dataset: the candidate (first id) against the
baseline (second id), paged, and exported as CSV or Parquet."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from app import record_changes
from app.deps import ReadKey, SessionDep
from app.record_changes import Comparison, Group
from app.record_changes_export import PARQUET_MEDIA_TYPE, csv_chunks, parquet_chunks
from core.models import ApiKey
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


def _export(
    session: Session,
    key: ApiKey,
    ids: tuple[str, str],
    filters: dict[str, str | None],
    suffix: str,
) -> tuple[Comparison, list[Group], dict[str, str]]:
    comparison = record_changes.open_comparison(session, key, *ids)
    groups = record_changes.select_groups(comparison, **filters)
    name = f"changes-{comparison.candidate.id}-vs-{comparison.baseline.id}.{suffix}"
    return comparison, groups, {"Content-Disposition": f'attachment; filename="{name}"'}


@router.get(
    "/{audit_id}/compare/{other_id}/changes.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "every matching change"}},
)
def compare_csv(
    audit_id: str,
    other_id: str,
    request: Request,
    session: SessionDep,
    key: ReadKey,
    kind: KindFilter = None,
    check: CheckFilter = None,
    metric: MetricFilter = None,
) -> StreamingResponse:
    """The same rows as the paged API, every page, streamed."""
    filters = {"kind": kind, "check": check, "metric": metric}
    comparison, groups, headers = _export(session, key, (audit_id, other_id), filters, "csv")
    pages = record_changes.iter_pages(request.app.state.db, comparison, groups)
    return StreamingResponse(csv_chunks(pages), media_type="text/csv", headers=headers)


@router.get(
    "/{audit_id}/compare/{other_id}/changes.parquet",
    response_class=StreamingResponse,
    responses={200: {"content": {PARQUET_MEDIA_TYPE: {}}, "description": "every change"}},
)
def compare_parquet(
    audit_id: str,
    other_id: str,
    request: Request,
    session: SessionDep,
    key: ReadKey,
    kind: KindFilter = None,
    check: CheckFilter = None,
    metric: MetricFilter = None,
) -> StreamingResponse:
    """The same rows as the CSV, one Parquet row group per page of 2,000."""
    filters = {"kind": kind, "check": check, "metric": metric}
    comparison, groups, headers = _export(session, key, (audit_id, other_id), filters, "parquet")
    pages = record_changes.iter_pages(request.app.state.db, comparison, groups)
    return StreamingResponse(parquet_chunks(pages), media_type=PARQUET_MEDIA_TYPE, headers=headers)
