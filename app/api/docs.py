"""OpenAPI schema and Swagger UI for key holders (a Bearer header or a dashboard session).

Swagger UI's files come from the installed `swagger-ui-bundle-v2` package and are served here:
the page loads nothing from outside, and runs under the same script-src 'self' policy as every
page (its start-up is a file, not an inline script).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

from app.dashboard.rendering import TEMPLATES
from app.deps import ReadKey
from core.errors import ApiError

router = APIRouter(include_in_schema=False)
SWAGGER_DIR = Path(str(swagger_ui_path))
SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


@router.get("/openapi.json")
def openapi_schema(request: Request, _key: ReadKey) -> dict[str, Any]:
    return request.app.openapi()


@router.get("/docs")
def swagger_ui(request: Request, _key: ReadKey) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, "docs.html", {"openapi_url": "/openapi.json"})


@router.get("/assets/swagger-ui/{name}")
def swagger_asset(name: str) -> FileResponse:
    if name not in SWAGGER_FILES:
        raise ApiError(404, "not_found", f"no asset {name!r}")
    return FileResponse(
        SWAGGER_DIR / name,
        media_type=SWAGGER_FILES[name],
        headers={"Cache-Control": "public, max-age=86400"},
    )
