"""One error shape for every failure: {"error": {"code", "message", "detail"}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import ApiError

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = "5"


def database_unreachable(exc: BaseException) -> bool:
    """Errors that mean the database cannot be reached now, as opposed to a bad query."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "detail": jsonable_encoder(detail)}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
        for e in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = _validation_detail(exc)
        if any(e["type"] == "json_invalid" for e in detail):
            return error_response(400, "invalid_json", "request body is not valid JSON", detail)
        return error_response(422, "invalid_request", "request does not match the schema", detail)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)
    async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
        if not database_unreachable(exc):
            return await _unexpected(_request, exc)
        log.warning("database unavailable: %s", str(exc).splitlines()[0])
        return error_response(
            503,
            "database_unavailable",
            "the database cannot be reached just now; nothing was changed, retry shortly",
            None,
            {"Retry-After": RETRY_AFTER_SECONDS},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return error_response(500, "internal_error", "an unexpected error occurred; it was logged")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "limit_exceeded"}
        code = codes.get(exc.status_code, "http_error")
        # A body cut as it streamed (app.body_limits.BodyTooLarge) names its limit.
        limit = getattr(exc, "setting", None)
        detail = {"limit": limit.removeprefix("MEMAUDIT_").lower()} if limit else None
        return error_response(
            exc.status_code, code, str(exc.detail), detail, getattr(exc, "headers", None)
        )
