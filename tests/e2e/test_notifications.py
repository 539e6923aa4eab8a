"""Notifications through a real worker: a policy outcome and a failed audit each reach a
Slack-style receiver and an SMTP sink on loopback exactly once (the tests allow private
addresses through CALLBACK_ALLOW_PRIVATE and SMTP_ALLOW_PRIVATE), a flaky receiver gets its
message after retries, a receiver that answers 4xx is tried once, and no message carries a
secret."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from core.task_names import NOTIFY_CHANNELS, SEND_NOTIFICATION
from tests.conftest import wait_for
from tests.core.inspection.test_huggingface import SHA, _cache_with
from tests.e2e.conftest import free_port
from tests.flows import session_cookie, submit, upload, wait_final

pytestmark = pytest.mark.slow
REPO = "acme/support-lm"
SMTP_USER, SMTP_PASSWORD = "relay-user", "relay-Pa55word-0123"
RECIPIENTS = ["ml-ops@example.org", "release@example.org"]


class ChatReceiver:
    """A Slack-style incoming webhook on 127.0.0.1: JSON bodies kept, each POST answered with
    the next status of `statuses` (the last one repeats)."""

    def __init__(self, *statuses: int) -> None:
        self.bodies: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append(json.loads(body))
                status = statuses[min(len(receiver.bodies), len(statuses)) - 1]
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        token = uuid.uuid4().hex
        self.secret = f"/services/T0MEMAUDIT/B0{token[:8]}/{token}"
        self.url = f"http://127.0.0.1:{self.server.server_port}{self.secret}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Sink:
    """aiosmtpd's handler: every message accepted and kept."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def _login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok)


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler, port = Sink(), free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, authenticator=_login, auth_require_tls=False
    )
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def chat() -> Iterator[dict[str, ChatReceiver]]:
    receivers = {
        "room": ChatReceiver(200),
        "flaky": ChatReceiver(503, 502, 200),
        "gone": ChatReceiver(404),
    }
    yield receivers
    for receiver in receivers.values():
        receiver.close()


def _channel(stack, body: dict) -> str:
    made = stack.client.post("/v1/notifications/channels", headers=stack.headers, json=body)
    assert made.status_code == 201, made.text
    return made.json()["id"]


def _deliveries(stack, channel_id: str) -> list[tuple]:
    found = stack.client.get(
        "/v1/notifications/deliveries", headers=stack.headers, params={"channel_id": channel_id}
    ).json()["data"]
    return sorted((d["audit_id"], d["attempt"], d["status_code"], d["delivered"]) for d in found)


def _ran(worker, task_id: str) -> bool:
    return f"{task_id}] succeeded" in worker.log_path.read_text(errors="replace")


def test_each_outcome_reaches_each_channel_once(make_stack, tiny_lm, tmp_path, sink, chat):
    mailbox, smtp_port = sink
    cache = tmp_path / "hub"
    _cache_with(tiny_lm.model_dir, cache, REPO)
    stack = make_stack(
        hf_cache_dir=str(cache),
        callback_allow_private=True,
        callback_backoff_seconds=0.3,
        smtp_allow_private=True,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_security="none",
        smtp_user=SMTP_USER,
        smtp_password=SMTP_PASSWORD,
        smtp_from="memaudit@example.org",
    )
    room = _channel(stack, {"name": "room", "kind": "webhook", "url": chat["room"].url})
    mail = _channel(stack, {"name": "mail", "kind": "email", "recipients": RECIPIENTS})
    flaky = _channel(
        stack,
        {"name": "flaky", "kind": "webhook", "url": chat["flaky"].url, "events": ["audit.failed"]},
    )
    gone = _channel(
        stack,
        {"name": "gone", "kind": "webhook", "url": chat["gone"].url, "events": ["policy.outcome"]},
    )
    policy_body = {
        "name": "acme-release",
        "source": "huggingface",
        "model_pattern": "acme/*",
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
        "thresholds": [{"metric": "loss.mean_loss", "op": "<=", "value": 100}],
    }
    made = stack.client.post("/v1/policies", headers=stack.headers, json=policy_body)
    assert made.status_code == 201, made.text
    started = stack.client.post(
        f"/v1/policies/{made.json()['id']}/reaudit",
        headers=stack.headers,
        json={"model_uri": f"hf:{REPO}@{SHA}"},
    )
    assert started.status_code == 201, started.text
    # A checkpoint cut short after submit: its audit fails at load, never retried.
    broken = tiny_lm.model_dir.parent / f"truncated-{uuid.uuid4().hex[:8]}"
    shutil.copytree(tiny_lm.model_dir, broken)
    dataset = upload(stack.client, stack.headers, tiny_lm.dataset_path)
    failing = submit(stack.client, stack.headers, broken, dataset["uri"])
    weights = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    worker = stack.start_worker()

    judged = wait_final(stack.client, stack.headers, started.json()["id"])
    failed = wait_final(stack.client, stack.headers, failing["id"])
    assert judged["status"] == "succeeded" and judged["verdict"]["status"] == "pass", judged
    assert failed["status"] == "failed", failed
    wait_for(lambda: len(chat["room"].bodies) == 2, 60, "the room's two messages")
    wait_for(lambda: len(mailbox.messages) == 2, 60, "the two e-mails")
    wait_for(lambda: any(d[3] for d in _deliveries(stack, flaky)), 60, "the flaky delivery")
    wait_for(lambda: _deliveries(stack, gone), 60, "the 4xx attempt")

    # Told again (a repeated task, a second finalize): nothing more is sent.
    celery = stack.client.app.state.celery
    repeats = [
        celery.send_task(NOTIFY_CHANNELS, args=[judged["id"]]),
        celery.send_task(NOTIFY_CHANNELS, args=[failed["id"]]),
        celery.send_task(SEND_NOTIFICATION, args=[room, failed["id"]]),
        celery.send_task(SEND_NOTIFICATION, args=[mail, judged["id"]]),
    ]
    for task in repeats:
        wait_for(lambda task=task: _ran(worker, task.id), 60, f"the repeated task {task.id}")
    time.sleep(1.5)  # past the 4xx channel's next backoff, were it retried

    # The room: one message per outcome, `text` as Slack and Mattermost read it.
    by_audit = {
        audit_id: body
        for body in chat["room"].bodies
        for audit_id in (judged["id"], failed["id"])
        if f"/audits/{audit_id}" in body["text"]
    }
    assert set(by_audit) == {judged["id"], failed["id"]} and len(chat["room"].bodies) == 2
    assert set(by_audit[judged["id"]]) == {"text"}
    assert "policy acme-release: PASS for hf:acme/support-lm@" in by_audit[judged["id"]]["text"]
    assert "loss.mean_loss = " in by_audit[judged["id"]]["text"]
    assert f"audit {failed['id']} of path:{broken} failed" in by_audit[failed["id"]]["text"]
    assert "not a valid safetensors file" in by_audit[failed["id"]]["text"]
    # The inbox: the same two, to every recipient, through the relay's login.
    letters = [message_from_bytes(raw, policy=policy.default) for _, raw in mailbox.messages]
    assert all(sorted(to) == sorted(RECIPIENTS) for to, _ in mailbox.messages)
    subjects = sorted(str(letter["Subject"]) for letter in letters)
    assert subjects[0].startswith(f"memaudit: audit {failed['id']} of path:")
    assert subjects[1].startswith("memaudit: policy acme-release: PASS for hf:acme/support-lm@")
    # The flaky receiver got its one message after two retries; the 4xx one was tried once.
    assert _deliveries(stack, flaky) == [
        (failed["id"], 1, 503, False),
        (failed["id"], 2, 502, False),
        (failed["id"], 3, 200, True),
    ]
    assert _deliveries(stack, gone) == [(judged["id"], 1, 404, False)]
    assert len(chat["flaky"].bodies) == 3 and len(chat["gone"].bodies) == 1

    # No secret anywhere a message went, nor in the worker's log.
    records = [json.loads(line)["text"] for line in tiny_lm.dataset_path.read_text().splitlines()]
    sent = [json.dumps(b) for r in chat.values() for b in r.bodies] + [
        letter.get_content() for letter in letters
    ]
    key = stack.headers["Authorization"].split()[1]
    secrets = [key, SMTP_PASSWORD, SMTP_USER, *(r.secret for r in chat.values())]
    for text in sent:
        assert not [s for s in secrets if s in text]
        assert not [r for r in records if r in text]
    log = worker.log_path.read_text(errors="replace")
    assert not [s for s in secrets if s in log]

    # The failed audit's report page lists its five attempts by channel name, never a URL.
    session_cookie(stack.client, key)
    page = stack.client.get(f"/audits/{failed['id']}").text
    assert page.count("data-notification-attempt=") == 5  # room, mail, flaky three times
    assert ">flaky <span" in page and not [s for s in secrets if s in page]
