"""Prometheus scrape endpoint; a read key is needed (Prometheus sends it as a bearer token)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from app import metrics
from app.deps import ReadKey, SessionDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=PlainTextResponse)
def scrape(session: SessionDep, key: ReadKey) -> PlainTextResponse:
    """A team's key sees its team's figures; an admin key (Prometheus's) sees the service's."""
    return PlainTextResponse(
        metrics.render(session, key), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
