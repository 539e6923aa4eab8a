"""Prometheus scrape endpoint; a read key is needed (Prometheus sends it as a bearer token)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app import metrics
from app.deps import ReadKey, SessionDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
            "description": "Prometheus text format 0.0.4, or OpenMetrics 1.0.0 when Accept asks",
        }
    },
)
def scrape(request: Request, session: SessionDep, key: ReadKey) -> Response:
    """A team's key sees its team's figures; an admin key (Prometheus's) sees the service's."""
    body, content_type = metrics.render(session, key, request.headers.get("accept"))
    return Response(body, media_type=content_type)
