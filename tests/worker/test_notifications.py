"""One notification attempt at a time, against receivers on loopback: what is retried, what is
refused before anything is sent, and what a message may never say."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.migrate import upgrade
from core.db import Database
from core.models import (
    Audit,
    AuditPolicy,
    NotificationChannel,
    NotificationDelivery,
    SampleResult,
)
from core.notifications import audit_outcome, masked_url
from core.verdicts import pending_verdict
from tests.conftest import make_settings
from worker import mail
from worker.notification_messages import chat_payload, compose
from worker.notifications import channels_to_tell, deliver

SMTP_PASSWORD = "smtp-Pa55word-0123"
HF_TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUv"
API_KEY = "ma_Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"
RECORD = "Alice's card number is 4929 1234 5678 9012"


class Receiver:
    """An HTTP endpoint on 127.0.0.1 answering each POST with the next status of `statuses`."""

    def __init__(self, *statuses: int) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                status = statuses[min(len(receiver.bodies), len(statuses)) - 1]
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"internal answer: db_password=hunter2")

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T01/B02/Secr3tT0kenXyZ"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator:
    made: list[Receiver] = []

    def build(*statuses: int) -> Receiver:
        made.append(Receiver(*statuses))
        return made[-1]

    yield build
    for receiver in made:
        receiver.close()


@pytest.fixture
def make_db(tmp_path) -> Iterator:
    made: list[Database] = []

    def build(**overrides):
        settings = make_settings(tmp_path / "d", tmp_path / "m", tmp_path / "ds", **overrides)
        settings.ensure_dirs()
        upgrade(settings.database_url)
        made.append(Database(settings.database_url))
        return settings, made[-1]

    yield build
    for db in made:
        db.dispose()


def _failed_audit(db: Database, error: str = "boom") -> str:
    with db.session() as session:
        audit = Audit(
            status="failed",
            model_uri="path:/models/lm",
            dataset_uri="dataset:ds_x",
            dataset_sha256="0" * 64,
            n_samples=1,
            checks=[],
            error=error,
        )
        session.add(audit)
        session.flush()
        return audit.id


def _channel(db: Database, **values) -> str:
    with db.session() as session:
        channel = NotificationChannel(
            team_id="default",
            name=values.pop("name", "room"),
            events=values.pop("events", ["policy.outcome", "audit.failed"]),
            **values,
        )
        session.add(channel)
        session.flush()
        return channel.id


def _log(db: Database, channel_id: str) -> list[tuple]:
    with db.session() as session:
        rows = session.query(NotificationDelivery).filter_by(channel_id=channel_id)
        return sorted((r.attempt, r.status_code, r.delivered, r.error) for r in rows)


def test_a_5xx_is_retried_until_delivered_then_never_sent_again(make_db, receivers) -> None:
    settings, db = make_db(callback_allow_private=True)
    receiver = receivers(503, 429, 200)
    audit_id = _failed_audit(db)
    channel_id = _channel(db, kind="webhook", webhook_url=receiver.url)
    assert channels_to_tell(db, audit_id) == [channel_id]
    attempts = [deliver(db, settings, channel_id, audit_id, n) for n in (1, 2, 3)]
    assert [(a.delivered, a.retry) for a in attempts] == [
        (False, True),
        (False, True),
        (True, False),
    ]
    # A repeated task after the delivery sends nothing, and the channel is not told again.
    assert deliver(db, settings, channel_id, audit_id, 1).delivered
    assert channels_to_tell(db, audit_id) == []
    assert len(receiver.bodies) == 3
    assert [row[:3] for row in _log(db, channel_id)] == [
        (1, 503, False),
        (2, 429, False),
        (3, 200, True),
    ]


def test_a_4xx_is_final(make_db, receivers) -> None:
    settings, db = make_db(callback_allow_private=True)
    receiver = receivers(404)
    audit_id = _failed_audit(db)
    channel_id = _channel(db, kind="webhook", webhook_url=receiver.url)
    attempt = deliver(db, settings, channel_id, audit_id, 1)
    assert (attempt.delivered, attempt.retry) == (False, False)
    # The status, described by the service: the receiver's body would be read back through
    # GET /v1/notifications/deliveries by whoever chose the URL.
    assert _log(db, channel_id) == [(1, 404, False, "the receiver answered 404 (Not Found)")]


def test_a_private_address_is_refused_without_the_opt_in_and_not_retried(
    make_db, receivers
) -> None:
    settings, db = make_db(smtp_allow_private=True)  # the relay's opt-in opens no webhook
    receiver = receivers(200)
    audit_id = _failed_audit(db)
    channel_id = _channel(db, kind="webhook", webhook_url=receiver.url)
    attempt = deliver(db, settings, channel_id, audit_id, 1)
    assert (attempt.delivered, attempt.retry) == (False, False)
    ((_, code, delivered, error),) = _log(db, channel_id)
    assert code is None and not delivered and "non-public address 127.0.0.1" in error
    assert "MEMAUDIT_CALLBACK_ALLOW_PRIVATE=true" in error
    assert "Secr3tT0ken" not in error
    assert receiver.bodies == []


def test_a_private_smtp_relay_is_refused_before_connecting(make_db) -> None:
    settings, db = make_db(
        smtp_host="127.0.0.1",
        smtp_port=1,
        smtp_from="memaudit@example.org",
        smtp_security="none",
        callback_allow_private=True,  # the callbacks' opt-in does not open the relay
    )
    audit_id = _failed_audit(db)
    channel_id = _channel(db, kind="email", recipients=["ops@example.org"])
    attempt = deliver(db, settings, channel_id, audit_id, 1)
    assert (attempt.delivered, attempt.retry) == (False, False)
    ((_, code, _, error),) = _log(db, channel_id)
    assert code is None and error.startswith("SMTP relay refused: host '127.0.0.1' resolves to")
    assert error.endswith("set MEMAUDIT_SMTP_ALLOW_PRIVATE=true to allow it")
    # With the relay's own opt-in it is tried, and a closed port is worth another attempt.
    allowed = settings.model_copy(
        update={"smtp_allow_private": True, "callback_allow_private": False}
    )
    message = mail.envelope(allowed, ["ops@example.org"], "s", "t")
    response = mail.send(allowed, message, ["ops@example.org"])
    assert response.status_code is None and response.retryable
    assert "ConnectionRefusedError" in response.error


def test_recipients_outside_the_allowed_domains_are_refused_at_send(make_db) -> None:
    """The domains may narrow after a channel was made: each send checks again, sends nothing
    (not even to the recipients still inside) and is not retried."""
    settings, db = make_db(
        smtp_host="127.0.0.1",
        smtp_port=1,  # nothing listens: a connection attempt would be a retryable error
        smtp_from="memaudit@example.org",
        smtp_security="none",
        smtp_allow_private=True,
        smtp_allowed_domains="example.org",
    )
    audit_id = _failed_audit(db)
    channel_id = _channel(db, kind="email", recipients=["ops@example.org", "someone@elsewhere.net"])
    attempt = deliver(db, settings, channel_id, audit_id, 1)
    assert (attempt.delivered, attempt.retry) == (False, False)
    ((_, code, _, error),) = _log(db, channel_id)
    assert code is None and "not in MEMAUDIT_SMTP_ALLOWED_DOMAINS" in error
    inside = mail.send(settings, mail.envelope(settings, ["ops@example.org"], "s", "t"),
                       ["ops@example.org"])  # fmt: skip
    assert inside.retryable and "ConnectionRefusedError" in inside.error


def test_no_secret_reaches_a_message(make_db) -> None:
    settings, db = make_db(
        smtp_user="relay-user-42",
        smtp_password=SMTP_PASSWORD,
        hf_token=HF_TOKEN,
        callback_secret="c" * 40,
    )
    hook = "https://hooks.slack.com/services/T01/B02/Secr3tT0kenXyZ"
    error = (
        f"could not reach https://bob:hunter2@registry.example/api with {HF_TOKEN}, key "
        f"{API_KEY}, relay login relay-user-42/{SMTP_PASSWORD}, hook {hook}, "
        f"Authorization: Bearer eyJhbGciOi.payload.sig, secret {'c' * 40}\n"
        f"while reading record 7: {RECORD}"
    )
    audit_id = _failed_audit(db, error + "x" * 400)
    with db.session() as session:
        audit = session.get(Audit, audit_id)
        message = compose(audit, audit_outcome(audit), None, settings, [hook])
    payload = str(chat_payload(message, blocks=True))
    for text in (message.text, message.subject, payload):
        for secret in (
            "hunter2",
            HF_TOKEN,
            API_KEY,
            "relay-user-42",
            SMTP_PASSWORD,
            "Secr3tT0ken",
            "eyJhbGciOi",
            "c" * 40,
            RECORD,
            "4929",
        ):
            assert secret not in text, (secret, text)
    assert "could not reach https://***@registry.example/api" in message.text
    assert message.text.endswith(f"Report: http://127.0.0.1:8000/audits/{audit_id}")


def test_a_policy_outcome_says_the_verdict_and_its_sentence(make_db) -> None:
    settings, db = make_db()
    with db.session() as session:
        policy = AuditPolicy(
            name="release-gate",
            source="mlflow",
            model_pattern="*",
            dataset_uri="dataset:ds_x",
            checks=[],
            thresholds=[],
        )
        session.add(policy)
        session.flush()
        audit = Audit(
            status="succeeded",
            model_uri="mlflow:models:/support-lm/7",
            dataset_uri="dataset:ds_x",
            dataset_sha256="0" * 64,
            n_samples=1,
            checks=[],
            policy_id=policy.id,
            verdict={
                "status": "fail",
                "promotion": "blocked",
                "results": [
                    {"metric": "extraction.greedy_extraction_rate", "op": "<=",
                     "threshold": 0.01, "value": 0.031, "passed": False}
                ],
            },
        )  # fmt: skip
        session.add(audit)
        session.flush()
        outcome = audit_outcome(audit)
        assert (outcome.event, outcome.outcome) == ("policy.outcome", "fail")
        message = compose(audit, outcome, policy.name, settings, [])
        audit.verdict = {**audit.verdict, "explanation": "extraction rate 3.1% vs 1.2% on champion"}
        gated = compose(audit, outcome, policy.name, settings, [])
        audit.verdict = {"status": "pending"}  # a gate still waiting on its baseline
        assert audit_outcome(audit) is None
        audit.policy_id = None
        audit.verdict = None
        assert audit_outcome(audit) is None  # a hand-submitted audit that succeeded
    assert message.subject == "memaudit: policy release-gate: FAIL for mlflow:models:/support-lm/7"
    assert (
        "Policy release-gate: FAIL (promotion blocked). extraction.greedy_extraction_rate = "
        "0.031 (needs <= 0.01): not met" in message.text
    )
    assert "FAIL (promotion blocked). extraction rate 3.1% vs 1.2% on champion" in gated.text
    # Slack reads <, > and & as markup: escaped as its docs ask (CommonMark receivers agree).
    escaped = message.text.replace("<=", "&lt;=")
    assert chat_payload(message, blocks=False) == {"text": escaped}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://hooks.slack.com/services/T0/B0/abcdefghijklmnop",
            "https://hooks.slack.com/…mnop",
        ),
        ("https://u:p@chat.example:8443/hooks/xyz", "https://chat.example:8443/…"),
        ("http://[::1]:9/hook/0123456789abcdefghij", "http://[::1]:9/…ghij"),
    ],
)
def test_a_masked_url_keeps_the_host_and_no_secret(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_a_model_path_with_a_line_break_still_makes_one_subject_line(make_db) -> None:
    settings, db = make_db(smtp_host="relay.example", smtp_from="memaudit@example.org")
    audit_id = _failed_audit(db)
    with db.session() as session:
        audit = session.get(Audit, audit_id)
        audit.model_uri = "path:/models/odd\r\nBcc: everyone@example.org"
        message = compose(audit, audit_outcome(audit), None, settings, [])
    letter = mail.envelope(settings, ["ops@example.org"], message.subject, message.text)
    assert "\n" not in message.subject and letter["Bcc"] is None
    assert letter["To"] == "ops@example.org"


@pytest.fixture
def eager_tasks(monkeypatch) -> Iterator:  # type: ignore[no-untyped-def]
    """worker/tasks.py run in this process (Celery eager) against a given database."""
    from worker import tasks

    def bind(settings, db):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(tasks, "get_settings", lambda: settings)
        monkeypatch.setattr(tasks, "database", lambda: db)
        return tasks

    tasks.celery_app.conf.task_always_eager = True
    yield bind
    tasks.celery_app.conf.task_always_eager = False


def _waiting_candidate(db: Database, baseline_status: str) -> tuple[str, str]:
    """(candidate, baseline): a candidate whose verdict waits for its baseline's audit, which
    has this status; 40% of records extracted by the candidate, 10% by the baseline."""
    with db.session() as session:
        policy = AuditPolicy(
            name="release-gate",
            source="mlflow",
            model_pattern="*",
            dataset_uri="dataset:ds_x",
            checks=[{"kind": "extraction", "params": {}}],
            thresholds=[
                {"metric": "extraction.greedy_extraction_rate", "greater_is_better": False}
            ],
            baseline="champion",
        )
        session.add(policy)
        session.flush()
        made = []
        for version, status, extracted in ((1, baseline_status, 10), (2, "succeeded", 40)):
            audit = Audit(
                status=status,
                model_uri=f"mlflow:models:/support-lm/{version}",
                dataset_uri="dataset:ds_x",
                dataset_sha256="0" * 64,
                n_samples=100,
                checks=[{"kind": "extraction", "params": {}}],
                policy_id=policy.id,
                summary={"extraction": {"all": {"greedy_rate": extracted / 100}}},
            )
            session.add(audit)
            session.flush()
            for i in range(100):
                values = {"greedy_extracted": i < extracted}
                session.add(
                    SampleResult(
                        audit_id=audit.id,
                        check="extraction",
                        sample_index=i,
                        sample_id=f"r{i}",
                        values=values,
                    )
                )
            made.append(audit)
        base, candidate = made
        found = {"ref": "champion", "version": "1", "audit_id": base.id}
        candidate.baseline, candidate.baseline_audit_id = found, base.id
        candidate.verdict, candidate.verdict_pending = pending_verdict(found), True
        return candidate.id, base.id


def test_a_pending_verdict_is_told_once_when_its_baseline_ends(
    make_db, receivers, eager_tasks
) -> None:
    settings, db = make_db(callback_allow_private=True)
    receiver = receivers(200)
    _channel(db, kind="webhook", webhook_url=receiver.url, events=["policy.outcome"])
    candidate, baseline = _waiting_candidate(db, "running")
    tasks = eager_tasks(settings, db)
    assert channels_to_tell(db, candidate) == []  # pending: nothing to tell yet
    with db.session() as session:
        session.get(Audit, baseline).status = "succeeded"
    tasks._release_waiting(baseline)  # the baseline's audit ended
    tasks._release_waiting(baseline)  # announced twice (a retried finalize)
    tasks.reap_stale_shards()  # and the reaper's round comes by
    assert len(receiver.bodies) == 1
    text = json.loads(receiver.bodies[0])["text"]
    assert "Policy release-gate: FAIL (promotion blocked)" in text
    assert "30 of 100 records newly extracted" in text


def test_the_reaper_tells_a_verdict_whose_baseline_was_cancelled_once(
    make_db, receivers, eager_tasks
) -> None:
    settings, db = make_db(callback_allow_private=True)
    receiver = receivers(200)
    _channel(db, kind="webhook", webhook_url=receiver.url, events=["policy.outcome"])
    candidate, _ = _waiting_candidate(db, "cancelled")  # through the API: no worker announced it
    tasks = eager_tasks(settings, db)
    tasks.reap_stale_shards()
    tasks.reap_stale_shards()
    assert len(receiver.bodies) == 1
    # No comparison could be made: `unknown`, which blocks whatever the policy allows.
    assert (
        "Policy release-gate: UNKNOWN (promotion blocked)" in json.loads(receiver.bodies[0])["text"]
    )
    with db.session() as session:
        assert session.get(Audit, candidate).verdict["status"] == "unknown"


class _RefusingRelay:
    """aiosmtpd's handler: every message refused with `reply`, which echoes what it was sent."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        return self.reply


@pytest.mark.parametrize(
    ("reply", "retry"),
    [
        ("554 5.7.1 rejected: <ops@example.org> said Secr3tT0ken", False),
        ("451 4.3.0 try later, <ops@example.org> said Secr3tT0ken", True),
    ],
)
def test_a_relays_refusal_is_kept_as_its_code_never_its_words(
    make_db, reply: str, retry: bool
) -> None:
    from aiosmtpd.controller import Controller

    from tests.e2e.conftest import free_port

    port = free_port()
    controller = Controller(_RefusingRelay(reply), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings, _ = make_db(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_from="memaudit@example.org",
            smtp_security="none",
            smtp_allow_private=True,
        )
        letter = mail.envelope(settings, ["ops@example.org"], "s", "t")
        response = mail.send(settings, letter, ["ops@example.org"])
    finally:
        controller.stop()
    code = int(reply[:3])
    assert (response.status_code, response.retryable) == (code, retry)
    assert response.error.startswith(f"the relay refused the message: SMTP {code} (")
    assert "Secr3tT0ken" not in response.error and "ops@example.org" not in response.error
