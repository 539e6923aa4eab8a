"""Outbound callbacks through a real worker: signed, retried with backoff, every attempt logged."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.migrate import upgrade
from core.db import Database
from core.models import Audit, CallbackDelivery
from core.outbound import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.conftest import make_settings, wait_for
from tests.flows import session_cookie, upload, wait_final
from worker import callbacks


class FlakyReceiver:
    """An HTTP endpoint on 127.0.0.1 that answers 500 `failures` times, then 200."""

    def __init__(self, failures: int) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                failed = len(receiver.requests) <= failures
                self.send_response(500 if failed else 200)
                self.end_headers()
                self.wfile.write(b"try again" if failed else b"ok")

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/memaudit"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    instance = FlakyReceiver(failures=2)
    yield instance
    instance.close()


def _body(tiny_lm, dataset_uri: str, callback_url: str) -> dict:
    return {
        "model": {"uri": f"path:{tiny_lm.model_dir}"},
        "dataset": {"uri": dataset_uri},
        "checks": [{"kind": "loss", "params": {}}],
        "callback_url": callback_url,
    }


@pytest.mark.slow
def test_a_failing_receiver_gets_the_result_once_after_three_attempts(
    make_stack, tiny_lm, receiver
) -> None:
    stack = make_stack(
        callback_allow_private=True, callback_backoff_seconds=0.3, callback_secret="k" * 32
    )
    stack.start_worker()
    dataset = upload(stack.client, stack.headers, tiny_lm.dataset_path)["uri"]
    response = stack.client.post(
        "/v1/audits", headers=stack.headers, json=_body(tiny_lm, dataset, receiver.url)
    )
    assert response.status_code == 202, response.text
    audit = wait_final(stack.client, stack.headers, response.json()["id"])
    assert audit["status"] == "succeeded"

    def deliveries() -> list[dict]:
        return stack.client.get(
            f"/v1/audits/{audit['id']}/callbacks", headers=stack.headers
        ).json()["data"]

    wait_for(lambda: any(d["delivered"] for d in deliveries()), 60, "the callback delivery")
    time.sleep(2.5)  # longer than the next backoff would be: no further attempt may come
    logged = deliveries()
    assert [(d["attempt"], d["status_code"], d["delivered"]) for d in logged] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    # The status only, never the receiver's body: the log is shown to whoever chose the URL.
    assert logged[0]["error"] == "the receiver answered 500 (Internal Server Error)"
    assert len(receiver.requests) == 3
    headers, body = receiver.requests[-1]
    assert verify("k" * 32, int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])
    sent = json.loads(body)
    assert sent["audit_id"] == audit["id"] and sent["status"] == "succeeded"
    assert sent["summary"]["loss"]["n_samples"] == audit["summary"]["loss"]["n_samples"]
    assert sent["report_url"].endswith(f"/audits/{audit['id']}")
    session_cookie(stack.client, stack.headers["Authorization"].split()[1])
    page = stack.client.get(f"/audits/{audit['id']}").text
    assert page.count("data-callback-attempt=") == 3


def test_a_failed_attempt_keeps_the_status_not_the_receivers_body(tmp_path, receiver) -> None:
    """A callback URL pointed at an internal service must not read its answer back through
    GET /v1/audits/{id}/callbacks: the attempt keeps a fixed description of the status."""
    settings = make_settings(
        tmp_path / "d", tmp_path / "m", tmp_path / "ds", callback_allow_private=True
    )
    settings.ensure_dirs()
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            audit = Audit(
                status="succeeded",
                model_uri="path:/models/lm",
                dataset_uri="dataset:ds_x",
                dataset_sha256="0" * 64,
                n_samples=1,
                checks=[],
                callback_url=receiver.url,
            )
            session.add(audit)
            session.flush()
            audit_id = audit.id
        attempt = callbacks.deliver(db, settings, audit_id, 1)
        assert (attempt.delivered, attempt.retry) == (False, True)
        with db.session() as session:
            (logged,) = session.query(CallbackDelivery).filter_by(audit_id=audit_id).all()
            assert logged.status_code == 500
            assert logged.error == "the receiver answered 500 (Internal Server Error)"
    finally:
        db.dispose()
    assert len(receiver.requests) == 1


def test_private_callback_urls_are_refused_at_submit(make_stack, tiny_lm) -> None:
    stack = make_stack()
    dataset = f"path:{tiny_lm.dataset_path}"
    response = stack.client.post(
        "/v1/audits",
        headers=stack.headers,
        json=_body(tiny_lm, dataset, "http://169.254.169.254/latest/meta-data"),
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "callback_url_not_allowed"
    listed = stack.client.get("/v1/audits", headers=stack.headers).json()
    assert listed["count"] == 0


@pytest.mark.slow
def test_a_cancelled_audit_calls_back_too(make_stack, tiny_lm) -> None:
    receiver = FlakyReceiver(failures=0)
    try:
        stack = make_stack(callback_allow_private=True, callback_secret="k" * 32)
        stack.start_worker()
        dataset = upload(stack.client, stack.headers, tiny_lm.dataset_path)["uri"]
        audit = stack.client.post(
            "/v1/audits", headers=stack.headers, json=_body(tiny_lm, dataset, receiver.url)
        ).json()
        cancelled = stack.client.post(f"/v1/audits/{audit['id']}/cancel", headers=stack.headers)
        assert cancelled.json()["status"] == "cancelled"
        wait_for(lambda: receiver.requests, 60, "the cancellation's callback")
        headers, body = receiver.requests[0]
        assert verify("k" * 32, int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])
        assert json.loads(body)["status"] == "cancelled"
    finally:
        receiver.close()
