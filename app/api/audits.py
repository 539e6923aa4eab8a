"""Audit routes: submit, read, list, samples, cancel."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from app import audits
from app.deps import CeleryDep, ReadKey, SessionDep, SettingsDep, SubmitKey
from app.schemas import AuditCreate, AuditPublic, AuditsPublic, SamplePublic, SamplesPublic

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
    audit, created = audits.submit_audit(session, settings, body, key)
    if created:
        audits.enqueue_audit(session, celery, settings, audit)
    else:
        response.status_code = 200
    return audits.to_public(session, settings, audit)


@router.get("", response_model=AuditsPublic)
def list_audits(
    session: SessionDep,
    settings: SettingsDep,
    _key: ReadKey,
    status: str | None = None,
    model: str | None = None,
    label: Annotated[str | None, Query(description="name:value")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditsPublic:
    rows, count = audits.list_audits(
        session, status=status, model=model, label=label, limit=limit, offset=offset
    )
    return AuditsPublic(data=[audits.to_public(session, settings, a) for a in rows], count=count)


@router.get("/{audit_id}", response_model=AuditPublic)
def get_audit(
    audit_id: str, session: SessionDep, settings: SettingsDep, _key: ReadKey
) -> AuditPublic:
    return audits.to_public(session, settings, audits.get_audit(session, audit_id))


@router.post("/{audit_id}/cancel", response_model=AuditPublic)
def cancel(
    audit_id: str, session: SessionDep, settings: SettingsDep, _key: SubmitKey
) -> AuditPublic:
    audit = audits.cancel_audit(session, audits.get_audit(session, audit_id))
    return audits.to_public(session, settings, audit)


@router.get("/{audit_id}/samples", response_model=SamplesPublic)
def samples(
    audit_id: str,
    session: SessionDep,
    _key: ReadKey,
    check: str | None = None,
    order_by: str = "sample_index",
    desc: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SamplesPublic:
    audit = audits.get_audit(session, audit_id)
    rows, count = audits.list_samples(
        session, audit, check=check, order_by=order_by, desc=desc, limit=limit, offset=offset
    )
    data = [
        SamplePublic(
            sample_index=r.sample_index, sample_id=r.sample_id, check=r.check, values=r.values
        )
        for r in rows
    ]
    return SamplesPublic(data=data, count=count)


def _csv_cell(value: object) -> object:
    """Spreadsheets run cells that start with = + - @ as formulas; text never may."""
    if isinstance(value, dict | list):
        value = json.dumps(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@router.get("/{audit_id}/samples.csv")
def samples_csv(
    audit_id: str, session: SessionDep, _key: ReadKey, check: str | None = None
) -> StreamingResponse:
    audit = audits.get_audit(session, audit_id)
    rows, _ = audits.list_samples(
        session, audit, check=check, order_by="sample_index", desc=False, limit=10**9, offset=0
    )
    columns = sorted({name for row in rows for name in row.values})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["sample_index", "sample_id", "check", *columns])
    for row in rows:
        cells = [
            row.sample_index,
            row.sample_id,
            row.check,
            *[row.values.get(name) for name in columns],
        ]
        writer.writerow([_csv_cell(cell) for cell in cells])
    headers = {"Content-Disposition": f'attachment; filename="audit-{audit.id}-samples.csv"'}
    return StreamingResponse(iter([buffer.getvalue()]), media_type="text/csv", headers=headers)
