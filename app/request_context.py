"""Each request's log lines carry a request id, and the audit id when the path names one;
a path or query with a NUL character is refused before any route sees it (PostgreSQL text
cannot hold one, and no identifier of ours contains one)."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import unquote_to_bytes

from app.errors import error_response
from core.logs import log_context

AUDIT_PATH = re.compile(r"^/(?:v1/)?audits/([0-9a-f]{32})(?:/|$)")


def _has_nul(scope: dict) -> bool:
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    return b"\x00" in scope.get("path", "").encode() or any(
        b"\x00" in unquote_to_bytes(part) for part in (raw_path, scope.get("query_string", b""))
    )


class RequestContextMiddleware:
    """Pure ASGI, so the context also covers uvicorn's access line for the request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _has_nul(scope):
            response = error_response(
                422, "invalid_request", "NUL characters are not allowed in paths or queries"
            )
            await response(scope, receive, send)
            return
        match = AUDIT_PATH.match(scope.get("path", ""))
        request_id = uuid.uuid4().hex[:16]

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        with log_context(request_id=request_id, audit_id=match.group(1) if match else None):
            await self.app(scope, receive, send_with_id)
