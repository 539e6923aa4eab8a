"""/metrics: Prometheus text (or OpenMetrics) from the rows, behind a read key, read back by
prometheus_client's own parsers."""

from __future__ import annotations

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from bench.report_data import seed_audit
from core.models import CallbackDelivery, EventCount, Shard, WebhookDelivery
from tests.flows import scrape

TOKENS = 123_456_789  # {value:g} wrote 1.23457e+08: a counter moving in steps of 1,000
SECONDS = 10_000_000.25
REFUSED = 4_294_967_297  # past 32 bits


def _seed(stack) -> None:
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
                info={"seconds": SECONDS, "n_tokens": TOKENS},
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
        session.add(EventCount(name="webhook.mlflow.bad_signature", count=REFUSED))


def test_metrics_count_what_the_database_holds_to_the_last_digit(make_stack) -> None:
    stack = make_stack()
    assert stack.client.get("/metrics").status_code == 401
    _seed(stack)
    response = stack.client.get("/metrics", headers=stack.headers)
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    values = scrape(stack.client, stack.headers)
    assert values['memaudit_audits{status="succeeded"}'] == 1
    assert values['memaudit_audits{status="failed"}'] == 1
    assert values['memaudit_audits{status="running"}'] == 0
    assert values['memaudit_shards{status="queued"}'] == 1
    assert values["memaudit_queue_depth"] == 1
    assert values["memaudit_shard_seconds_sum"] == SECONDS
    assert values["memaudit_shard_seconds_count"] == 1
    assert values["memaudit_tokens_scored_total"] == TOKENS
    assert values["memaudit_tokens_per_second"] == TOKENS / SECONDS
    assert values['memaudit_webhook_deliveries{source="mlflow",status="processed"}'] == 1
    assert values['memaudit_callback_attempts_total{outcome="failed"}'] == 1
    assert values['memaudit_callback_attempts_total{outcome="delivered"}'] == 0
    assert values['memaudit_refused_total{event="webhook.mlflow.bad_signature"}'] == REFUSED
    kinds = {f.name: f.type for f in text_string_to_metric_families(response.text)}
    assert kinds == {
        "memaudit_audits": "gauge",
        "memaudit_shards": "gauge",
        "memaudit_queue_depth": "gauge",
        "memaudit_shard_seconds": "summary",
        "memaudit_tokens_scored": "counter",
        "memaudit_tokens_per_second": "gauge",
        "memaudit_callback_attempts": "counter",
        # A delivery moves from received to processed: a status's count can go down.
        "memaudit_webhook_deliveries": "gauge",
        "memaudit_refused": "counter",
    }


def test_openmetrics_when_the_scrape_asks_for_it(make_stack) -> None:
    stack = make_stack()
    _seed(stack)
    # What Prometheus sends: OpenMetrics first, the text format as a fallback.
    accept = (
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
        "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    )
    response = stack.client.get("/metrics", headers={**stack.headers, "Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0")
    assert response.text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(response.text)}
    tokens = families["memaudit_tokens_scored"]
    assert tokens.type == "counter"
    assert [(s.name, s.value) for s in tokens.samples] == [("memaudit_tokens_scored_total", TOKENS)]
    assert families["memaudit_webhook_deliveries"].type == "gauge"
    refused = stack.client.get(
        "/metrics", headers={**stack.headers, "Accept": "application/openmetrics-text;q=0"}
    )
    assert refused.headers["content-type"].startswith("text/plain; version=0.0.4")
