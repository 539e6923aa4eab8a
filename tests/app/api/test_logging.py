"""API log lines are JSON and carry the request id (also returned) and the audit id."""

from __future__ import annotations

import io
import json
import logging

from core.logs import JsonFormatter


def test_api_lines_carry_the_request_and_audit(make_stack, tiny_lm, body) -> None:
    stack = make_stack()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    finally:
        logging.getLogger().removeHandler(handler)
    assert response.status_code == 202
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    queued = [e for e in entries if e["message"].startswith("audit queued")]
    assert len(queued) == 1
    assert queued[0]["audit_id"] == response.json()["id"]
    assert queued[0]["request_id"] == response.headers["x-request-id"]
