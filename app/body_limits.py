"""Every request body bounded as it streams, and JSON checked before any route parses it.

One pure ASGI middleware for every route: a declared length over the limit is refused before a
byte is read; an undeclared one is counted as it arrives and cut at the limit (an upload never
spools past it). A JSON body (audits, policies, webhook deliveries) is read whole, at most
MAX_JSON_BODY_BYTES, and must be strict UTF-8, nested no deeper than a fixed limit and free of
lone surrogate escapes, each refused with the line where it is found.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from app.errors import error_response
from core.config import Settings
from core.json_input import JsonRefused, check_text, decode_utf8

UPLOAD_PATH = "/v1/datasets"
MULTIPART_OVERHEAD = 64 * 1024  # part headers and boundaries around the file
FORM_LIMIT = 64 * 1024  # the sign-in and sign-out forms
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# The rest of a refused body is never read: the connection closes after the answer.
CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes its limit; answered 413."""

    def __init__(self, limit: int, setting: str) -> None:
        message = f"the request body exceeds {limit} bytes ({setting})"
        super().__init__(413, message, headers=CLOSE)
        self.limit, self.setting = limit, setting


def _too_large(limit: int, setting: str, value: int | None = None) -> Any:
    return error_response(
        413,
        "limit_exceeded",
        f"the request body exceeds {limit} bytes ({setting})",
        {"limit": setting.removeprefix("MEMAUDIT_").lower(), "value": value},
        headers=CLOSE,
    )


class BodyLimitMiddleware:
    def __init__(self, app: Any, settings: Settings) -> None:
        self.app, self.settings = app, settings

    def _limit(self, scope: dict, content_type: str) -> tuple[int, str]:
        if content_type.startswith("multipart/form-data") and scope["path"] == UPLOAD_PATH:
            return self.settings.max_upload_bytes + MULTIPART_OVERHEAD, "MEMAUDIT_MAX_UPLOAD_BYTES"
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            return FORM_LIMIT, "the form limit"
        return self.settings.max_json_body_bytes, "MEMAUDIT_MAX_JSON_BODY_BYTES"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "").lower()
        limit, setting = self._limit(scope, content_type)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(limit, setting, int(declared))(scope, receive, send)
            return
        if content_type.startswith(("multipart/", "application/x-www-form-urlencoded")):
            await self.app(scope, _counting(receive, limit, setting), send)
            return
        await self._checked_json(scope, receive, send, limit, setting)

    async def _checked_json(
        self, scope: dict, receive: Any, send: Any, limit: int, setting: str
    ) -> None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(limit, setting)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if body:
            try:
                check_text(decode_utf8(body))
            except JsonRefused as exc:
                response = error_response(
                    400, "invalid_json", f"the request body: {exc}", {"line": exc.line}
                )
                await response(scope, receive, send)
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _counting(receive: Any, limit: int, setting: str) -> Any:
    received = 0

    async def counted() -> dict:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise BodyTooLarge(limit, setting)
        return message

    return counted
