"""Prometheus scrape endpoint; a read key is needed (Prometheus sends it as a bearer token)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from app import metrics
from app.deps import ReadKey, SessionDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=PlainTextResponse)
def scrape(session: SessionDep, _key: ReadKey) -> PlainTextResponse:
    return PlainTextResponse(
        metrics.render(session), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
