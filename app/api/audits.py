"""Audit routes: submit, read, list, samples, cancel."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse

from app import audits
from app.dashboard.pages import export_context
from app.dashboard.rendering import EXPORT_CONTENT_SECURITY_POLICY, render_export
from app.deps import CeleryDep, ReadKey, SessionDep, SettingsDep, SubmitKey
from core import submission
from core.schemas import (
    MAX_DB_INT,
    AuditCreate,
    AuditPublic,
    AuditsPublic,
    CallbackDeliveriesPublic,
    CallbackDeliveryPublic,
    SampleDetailPublic,
    SamplePublic,
    SampleRecordPublic,
    SamplesPublic,
)
from core.tenancy import key_owner
from worker.checks.registry import REGISTRY

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/audits", tags=["audits"])


@router.post("", response_model=AuditPublic, status_code=202)
def submit(
    body: AuditCreate,
    session: SessionDep,
    settings: SettingsDep,
    celery: CeleryDep,
    key: SubmitKey,
    response: Response,
) -> AuditPublic:
    audit, created = submission.submit_audit(
        session, settings, body, key_owner(session, key), REGISTRY
    )
    if created:
        submission.enqueue_audit(session, celery, settings, audit)
        log.info("audit queued by key %s", key.prefix, extra={"audit_id": audit.id})
    else:
        response.status_code = 200
    return audits.to_public(session, settings, audit)


@router.get("", response_model=AuditsPublic)
def list_audits(
    session: SessionDep,
    settings: SettingsDep,
    key: ReadKey,
    status: str | None = None,
    model: str | None = None,
    family: Annotated[str | None, Query(description="every version of one model")] = None,
    label: Annotated[str | None, Query(description="name:value")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
) -> AuditsPublic:
    rows, count = audits.list_audits(
        session,
        key,
        status=status,
        model=model,
        label=label,
        limit=limit,
        offset=offset,
        family=family,
    )
    return AuditsPublic(data=[audits.to_public(session, settings, a) for a in rows], count=count)


@router.get("/{audit_id}", response_model=AuditPublic)
def get_audit(
    audit_id: str, session: SessionDep, settings: SettingsDep, key: ReadKey
) -> AuditPublic:
    return audits.to_public(session, settings, audits.get_audit(session, audit_id, key))


@router.post("/{audit_id}/cancel", response_model=AuditPublic)
def cancel(
    audit_id: str, session: SessionDep, settings: SettingsDep, celery: CeleryDep, key: SubmitKey
) -> AuditPublic:
    audit = audits.cancel_audit(session, audits.get_audit(session, audit_id, key))
    audits.announce_end(celery, settings, audit)
    return audits.to_public(session, settings, audit)


@router.get("/{audit_id}/callbacks", response_model=CallbackDeliveriesPublic)
def callbacks(audit_id: str, session: SessionDep, key: ReadKey) -> CallbackDeliveriesPublic:
    """Every attempt to deliver this audit's result to its callback URL."""
    rows = audits.list_callbacks(session, audits.get_audit(session, audit_id, key))
    return CallbackDeliveriesPublic(
        data=[CallbackDeliveryPublic.model_validate(r) for r in rows], count=len(rows)
    )


@router.get("/{audit_id}/samples", response_model=SamplesPublic)
def samples(
    audit_id: str,
    session: SessionDep,
    key: ReadKey,
    check: str | None = None,
    order_by: Annotated[
        str, Query(description="sample_index, score (indexed) or a per-sample field")
    ] = "sample_index",
    desc: bool = False,
    member: Annotated[bool | None, Query(description="only members or non-members")] = None,
    q: Annotated[str | None, Query(max_length=200, description="sample id contains")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
) -> SamplesPublic:
    audit = audits.get_audit(session, audit_id, key)
    rows, count = audits.list_samples(
        session,
        audit,
        check=check,
        order_by=order_by,
        desc=desc,
        limit=limit,
        offset=offset,
        member=member,
        search=q,
    )
    return SamplesPublic(data=[SamplePublic.model_validate(r) for r in rows], count=count)


@router.get("/{audit_id}/samples/{sample_index}", response_model=SampleRecordPublic)
def sample(
    audit_id: str,
    sample_index: Annotated[int, Path(ge=0, le=MAX_DB_INT)],
    session: SessionDep,
    key: ReadKey,
) -> SampleRecordPublic:
    rows = audits.get_sample(session, audits.get_audit(session, audit_id, key), sample_index)
    return SampleRecordPublic(
        sample_index=sample_index,
        sample_id=rows[0].sample_id,
        checks=[SampleDetailPublic.model_validate(r) for r in rows],
    )


def csv_cell(value: object) -> object:
    """Spreadsheets run cells that start with = + - @ as formulas; text never may."""
    if isinstance(value, dict | list):
        value = json.dumps(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_lines(pages: Iterator[list]) -> Iterator[str]:
    """Columns from the first page; keys first seen later go, as JSON, to a last `other`."""
    columns: list[str] | None = None
    for page in pages:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if columns is None:
            columns = sorted({name for row in page for name in row.values})
            writer.writerow(["sample_index", "sample_id", "check", *columns, "other"])
        for row in page:
            other = {k: v for k, v in row.values.items() if k not in columns}
            cells = [
                row.sample_index,
                row.sample_id,
                row.check,
                *[row.values.get(name) for name in columns],
                other or None,
            ]
            writer.writerow([csv_cell(cell) for cell in cells])
        yield buffer.getvalue()


@router.get(
    "/{audit_id}/samples.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "every per-sample row"}},
)
def samples_csv(
    audit_id: str, request: Request, session: SessionDep, key: ReadKey, check: str | None = None
) -> StreamingResponse:
    """Every per-sample row, streamed page by page."""
    audit = audits.get_audit(session, audit_id, key)
    audits.require_check(audit, check)
    pages = audits.iter_sample_pages(request.app.state.db, audit.id, check)
    headers = {"Content-Disposition": f'attachment; filename="audit-{audit.id}-samples.csv"'}
    return StreamingResponse(_csv_lines(pages), media_type="text/csv", headers=headers)


@router.get("/{audit_id}/report.html", response_class=HTMLResponse)
def report_html(
    audit_id: str, session: SessionDep, settings: SettingsDep, key: ReadKey
) -> HTMLResponse:
    """One self-contained file (plotly.js inline) that opens offline and can be shared."""
    audit = audits.get_audit(session, audit_id, key)
    html = render_export(export_context(session, settings, audit))
    headers = {
        "Content-Disposition": f'attachment; filename="memaudit-{audit.id}.html"',
        "Content-Security-Policy": EXPORT_CONTENT_SECURITY_POLICY,
    }
    return HTMLResponse(html, headers=headers)
