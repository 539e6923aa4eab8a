"""Structured logs: one JSON object per line, carrying the audit (and shard, task, request)
that the line is about, so one audit's story can be pulled from a fleet's logs with one filter."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

CONTEXT_FIELDS = ("audit_id", "shard_id", "task_id", "request_id")
_context: ContextVar[dict[str, str]] = ContextVar("memaudit_log_context", default={})  # noqa: B039


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Every line logged inside carries these fields (nested contexts add to each other)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: str | None) -> None:
    """Add fields to the current context until it ends (a task learns its audit mid-way)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})


def replace_context(**fields: str | None) -> None:
    """Start afresh (a worker process between two tasks)."""
    _context.set({k: v for k, v in fields.items() if v})


def current_context() -> dict[str, str]:
    return dict(_context.get())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
            **_context.get(),
        }
        for name in CONTEXT_FIELDS:  # `extra={...}` wins over the ambient context
            if getattr(record, name, None):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(log_format: str = "json", level: str | int = "INFO") -> None:
    """One handler on the root logger: uvicorn, Celery and our own loggers all go through it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.captureWarnings(True)  # warnings become log lines too, in the same format
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # httpx logs every request's full URL at INFO; a notification webhook's URL is a secret
    # (its path is the token) and a callback URL may carry one, so only its warnings pass.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
