"""The OpenAPI document, with the error responses every route really gives.

FastAPI documents only its own 422 shape; ours is the one error shape of `app/errors.py`, and
routes also answer 401/403 (keys), 404, 413/429 (limits) and 503 (database down). Clients and
the schema fuzzer read the document, so it must say so.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from core.schemas import ErrorResponse

ERRORS = {
    "400": "The body is not valid JSON (or not UTF-8, nested too deep, a lone surrogate)",
    "401": "No key, or a key that is not valid",
    "403": "The key's scope does not allow this",
    "404": "No such resource",
    "409": "Conflicts with the resource's state",
    "413": "Over a configured limit (body size, upload, records)",
    "422": "The request is not valid",
    "429": "Too many active audits for this key, or too many failed keys from this client",
    "503": "The database (or, for a split, the task queue) cannot be reached just now",
}
OPEN_ROUTES = {"/healthz", "/readyz"}
WEBHOOK_ERRORS = ("400", "401", "404", "409", "413", "503")


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }


def documented_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs"))
    components["ErrorResponse"] = error_schema
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if path in OPEN_ROUTES:
                operation["security"] = []
                continue
            codes = WEBHOOK_ERRORS if path.startswith("/v1/hooks/") else ERRORS
            for code in codes:
                responses[code] = _error(ERRORS[code])
    schema["components"].setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
    }
    schema["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema
