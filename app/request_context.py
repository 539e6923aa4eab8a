"""Each request's log lines carry a request id, and the audit id when the path names one."""

from __future__ import annotations

import re
import uuid
from typing import Any

from app.logs import log_context

AUDIT_PATH = re.compile(r"^/(?:v1/)?audits/([0-9a-f]{32})(?:/|$)")


class RequestContextMiddleware:
    """Pure ASGI, so the context also covers uvicorn's access line for the request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        match = AUDIT_PATH.match(scope.get("path", ""))
        request_id = uuid.uuid4().hex[:16]

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        with log_context(request_id=request_id, audit_id=match.group(1) if match else None):
            await self.app(scope, receive, send_with_id)
