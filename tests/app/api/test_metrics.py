"""/metrics: Prometheus text from the rows, behind a read key."""

from __future__ import annotations

from bench.report_data import seed_audit
from core.models import CallbackDelivery, Shard, WebhookDelivery


def _samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_metrics_count_what_the_database_holds(make_stack) -> None:
    stack = make_stack()
    assert stack.client.get("/metrics").status_code == 401
    done = seed_audit(stack.db, 20)
    seed_audit(stack.db, 5, status="failed", error="boom")
    with stack.db.session() as session:
        session.add(
            Shard(
                audit_id=done,
                index=0,
                start=0,
                stop=20,
                status="succeeded",
                info={"seconds": 2.0, "n_tokens": 1000},
            )
        )
        session.add(Shard(audit_id=done, index=1, start=20, stop=40, status="queued", info={}))
        session.add(
            WebhookDelivery(
                id="mlflow:1",
                source="mlflow",
                event="model_version.created",
                payload={},
                status="processed",
                detail={},
            )
        )
        session.add(
            CallbackDelivery(
                audit_id=done,
                attempt=1,
                url="https://x",
                status_code=500,
                duration_ms=3,
                delivered=False,
            )
        )
    response = stack.client.get("/metrics", headers=stack.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = _samples(response.text)
    assert values['memaudit_audits{status="succeeded"}'] == 1
    assert values['memaudit_audits{status="failed"}'] == 1
    assert values['memaudit_audits{status="running"}'] == 0
    assert values["memaudit_queue_depth"] == 1
    assert values["memaudit_shard_seconds_sum"] == 2.0
    assert values["memaudit_shard_seconds_count"] == 1
    assert values["memaudit_tokens_per_second"] == 500.0
    assert values['memaudit_webhook_deliveries{source="mlflow",status="processed"}'] == 1
    assert values['memaudit_callback_attempts{outcome="failed"}'] == 1
    assert "# TYPE memaudit_audits gauge" in response.text
