"""Evidence packs of finished audits, and the public keys that verify them."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app import audits
from app.deps import ReadKey, SessionDep, SettingsDep
from app.evidence.pack import active_key, signed_pack
from app.evidence.page import EVIDENCE_CONTENT_SECURITY_POLICY, render_evidence_html
from app.evidence.pdf import find_renderer, html_to_pdf
from core.evidence_keys import KeyStore
from core.schemas import ErrorResponse, EvidenceKeyPublic, EvidenceKeysPublic, EvidencePack

router = APIRouter(tags=["evidence"])

FORMATS = {"json": "application/json", "html": "text/html", "pdf": "application/pdf"}


@router.get(
    "/v1/audits/{audit_id}/evidence",
    response_model=EvidencePack,
    responses={
        200: {
            "content": {"text/html": {}, "application/pdf": {}},
            "description": "the signed pack (json), its printable page (html) or that page "
            "printed (pdf)",
        },
        501: {"model": ErrorResponse, "description": "pdf asked for; no renderer is installed"},
    },
)
def evidence(
    audit_id: str,
    session: SessionDep,
    settings: SettingsDep,
    key: ReadKey,
    format: Annotated[Literal["json", "html", "pdf"], Query()] = "json",
) -> Response:
    """Signed now with the active key; verify with `memaudit evidence verify`."""
    audit = audits.get_audit(session, audit_id, key)
    envelope = signed_pack(session, settings, audit)
    name = f"memaudit-evidence-{audit.id}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "json":
        body = json.dumps(envelope, indent=2, ensure_ascii=False, allow_nan=False)
        return Response(body, media_type=FORMATS[format], headers=headers)
    headers["Content-Security-Policy"] = EVIDENCE_CONTENT_SECURITY_POLICY
    html = render_evidence_html(envelope)
    if format == "html":
        return Response(html, media_type=FORMATS[format], headers=headers)
    renderer = find_renderer(settings.pdf_renderer)
    document = html_to_pdf(html, renderer, settings.pdf_timeout_seconds)
    return Response(document, media_type=FORMATS[format], headers=headers)


@router.get("/v1/evidence/keys", response_model=EvidenceKeysPublic)
def evidence_keys(settings: SettingsDep, _key: ReadKey) -> EvidenceKeysPublic:
    """The active key (made now if no pack was signed yet, so it can be pinned before the
    first pack) and the retired ones, newest first."""
    store = KeyStore(settings.evidence_keys_dir)
    active_key(store)
    keys = store.published()
    data = [EvidenceKeyPublic.model_validate(k, from_attributes=True) for k in keys]
    return EvidenceKeysPublic(data=data, count=len(data))
