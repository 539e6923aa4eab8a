"""Prometheus metrics, computed from the database at scrape time (the rows are the truth).

A custom collector over the database, exposed by `prometheus_client`: the text format, or
OpenMetrics when the scrape asks for it. Every value is written in full (a counter of
123,456,789 reads back exactly), counters carry `_total`, and what can go down is a gauge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import exposition
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.openmetrics import exposition as openmetrics
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core.models import (
    ApiKey,
    Audit,
    AuditStatus,
    CallbackDelivery,
    EventCount,
    Shard,
    ShardStatus,
    WebhookDelivery,
)
from core.tenancy import visible

SHARD_STATUSES = (
    ShardStatus.QUEUED,
    ShardStatus.RUNNING,
    ShardStatus.SUCCEEDED,
    ShardStatus.FAILED,
    ShardStatus.CANCELLED,
)


class DatabaseCollector:
    """What one key may see, read from the rows on each scrape: its own team's audits' figures;
    an admin key sees every team's, and the service-wide ones (webhook deliveries, refused
    events)."""

    def __init__(self, session: Session, key: ApiKey) -> None:
        self.session = session
        self.key = key

    def _scoped(self, query: Select[Any], audit_id: Any = None) -> Select[Any]:
        """The key's team's rows; rows of other tables reach their audit (`audit_id`) only
        when there is a team to filter by (an admin's scrape joins nothing)."""
        if self.key.is_admin:
            return query
        if audit_id is not None:
            query = query.join(Audit, Audit.id == audit_id)
        return visible(query, Audit.team_id, self.key)

    def _by_status(self, name: str, help_text: str, column: Any, statuses: Iterable[str]) -> Metric:
        audit_id = Shard.audit_id if column is Shard.status else None
        query = self._scoped(select(column, func.count()), audit_id).group_by(column)
        found = dict(self.session.execute(query).all())
        family = GaugeMetricFamily(name, help_text, labels=["status"])
        for status in statuses:
            family.add_metric([status], found.get(status, 0))
        return family

    def collect(self) -> Iterator[Metric]:
        """The families, each read from the rows now (prometheus_client's collector protocol)."""
        yield self._by_status(
            "memaudit_audits",
            "Audits by status.",
            Audit.status,
            [*AuditStatus.ACTIVE, *AuditStatus.FINAL],
        )
        yield self._by_status("memaudit_shards", "Shards by status.", Shard.status, SHARD_STATUSES)
        yield self._queue_depth()
        yield from self._shard_work()
        yield self._callback_attempts()
        if self.key.is_admin:  # figures of no team
            yield self._webhook_deliveries()
            yield self._refused()

    def _queue_depth(self) -> Metric:
        queued = self.session.scalar(
            self._scoped(
                select(func.count()).select_from(Shard).where(Shard.status == ShardStatus.QUEUED),
                Shard.audit_id,
            )
        )
        return GaugeMetricFamily(
            "memaudit_queue_depth", "Shards waiting for a worker.", value=queued or 0
        )

    def _shard_work(self) -> Iterator[Metric]:
        """Seconds and tokens of the finished shards, and their ratio."""
        seconds, tokens, shards_done = self.session.execute(
            self._scoped(
                select(
                    func.coalesce(func.sum(Shard.info["seconds"].as_float()), 0.0),
                    func.coalesce(func.sum(Shard.info["n_tokens"].as_float()), 0.0),
                    func.count(),
                )
                .select_from(Shard)
                .where(Shard.status == ShardStatus.SUCCEEDED),
                Shard.audit_id,
            )
        ).one()
        yield SummaryMetricFamily(
            "memaudit_shard_seconds",
            "Worker time of finished shards.",
            count_value=shards_done,
            sum_value=seconds,
        )
        yield CounterMetricFamily(
            "memaudit_tokens_scored", "Tokens scored by finished shards.", value=tokens
        )
        yield GaugeMetricFamily(
            "memaudit_tokens_per_second",
            "Tokens scored per second of shard time, over all finished shards.",
            value=tokens / seconds if seconds else 0.0,
        )

    def _callback_attempts(self) -> Metric:
        query = self._scoped(
            select(CallbackDelivery.delivered, func.count()), CallbackDelivery.audit_id
        ).group_by(CallbackDelivery.delivered)
        found = dict(self.session.execute(query).all())
        family = CounterMetricFamily(
            "memaudit_callback_attempts",
            "Outbound callback attempts, by outcome.",
            labels=["outcome"],
        )
        family.add_metric(["delivered"], found.get(True, 0))
        family.add_metric(["failed"], found.get(False, 0))
        return family

    def _webhook_deliveries(self) -> Metric:
        # A gauge: a delivery moves from received to processed, so a status's count can fall.
        family = GaugeMetricFamily(
            "memaudit_webhook_deliveries",
            "Registry webhook deliveries kept, by source and current status.",
            labels=["source", "status"],
        )
        query = select(WebhookDelivery.source, WebhookDelivery.status, func.count()).group_by(
            WebhookDelivery.source, WebhookDelivery.status
        )
        for source, status, n in self.session.execute(query).all():
            family.add_metric([source, status], n)
        return family

    def _refused(self) -> Metric:
        family = CounterMetricFamily(
            "memaudit_refused",
            "Refused events kept as counts, not rows (webhook deliveries with a bad signature).",
            labels=["event"],
        )
        query = select(EventCount.name, EventCount.count).order_by(EventCount.name)
        for name, count in self.session.execute(query).all():
            family.add_metric([name], count)
        return family


def _quality(params: list[str]) -> float:
    """A media range's q (1 when absent, 0 when unreadable: not acceptable)."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def wants_openmetrics(accept: str | None) -> bool:
    """Whether the Accept header names OpenMetrics with a q above 0 (Prometheus asks for it
    first, the text format after it); its version is not negotiated: 1.0.0 is served."""
    for media_range in (accept or "").split(","):
        kind, *params = media_range.split(";")
        if kind.strip() == "application/openmetrics-text" and _quality(params) > 0:
            return True
    return False


def render(session: Session, key: ApiKey, accept: str | None) -> tuple[bytes, str]:
    """The key's figures in the format its scrape asks for: (body, content type). The encoders
    read any collector, so each scrape gets its own, scoped to its key, and no registry is kept
    between scrapes."""
    collector = DatabaseCollector(session, key)
    if wants_openmetrics(accept):
        return openmetrics.generate_latest(collector), openmetrics.CONTENT_TYPE_LATEST
    return exposition.generate_latest(collector), exposition.CONTENT_TYPE_PLAIN_0_0_4
