"""OpenAPI schema and Swagger UI, for key holders (a Bearer header or the dashboard cookie)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from app.deps import ReadKey

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
def openapi_schema(request: Request, _key: ReadKey) -> dict[str, Any]:
    return request.app.openapi()


@router.get("/docs")
def swagger_ui(_key: ReadKey) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="memaudit API")
