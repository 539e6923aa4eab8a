"""Prometheus metrics, computed from the database at scrape time (the rows are the truth).

Text exposition format 0.0.4, written by hand: a handful of gauges and counters need no client
library.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[dict, float]]) -> str:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        rendered = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
        lines.append(f"{name}{{{rendered}}} {value:g}" if rendered else f"{name} {value:g}")
    return "\n".join(lines)


def render(session: Session, key: ApiKey) -> str:
    """What the key's team may see: its own audits' figures; an admin key sees every team's,
    and the service-wide ones (webhook deliveries, refused events)."""

    def scoped(query: Select[Any], audit_id: Any = None) -> Select[Any]:
        """The key's team's rows; rows of other tables reach their audit (`audit_id`) only
        when there is a team to filter by (an admin's scrape joins nothing)."""
        if key.is_admin:
            return query
        if audit_id is not None:
            query = query.join(Audit, Audit.id == audit_id)
        return visible(query, Audit.team_id, key)

    def by_status(column: Any, statuses: Iterable[str]) -> list[tuple[dict, float]]:
        audit_id = Shard.audit_id if column is Shard.status else None
        query = scoped(select(column, func.count()), audit_id).group_by(column)
        found = dict(session.execute(query).all())
        return [({"status": status}, float(found.get(status, 0))) for status in statuses]

    shard_seconds = Shard.info["seconds"].as_float()
    shard_tokens = Shard.info["n_tokens"].as_float()
    seconds_sum, tokens_sum, shards_done = session.execute(
        scoped(
            select(
                func.coalesce(func.sum(shard_seconds), 0.0),
                func.coalesce(func.sum(shard_tokens), 0.0),
                func.count(),
            )
            .select_from(Shard)
            .where(Shard.status == ShardStatus.SUCCEEDED),
            Shard.audit_id,
        )
    ).one()
    webhooks = (
        session.execute(
            select(WebhookDelivery.source, WebhookDelivery.status, func.count()).group_by(
                WebhookDelivery.source, WebhookDelivery.status
            )
        ).all()
        if key.is_admin
        else []
    )
    callbacks = dict(
        session.execute(
            scoped(
                select(CallbackDelivery.delivered, func.count()), CallbackDelivery.audit_id
            ).group_by(CallbackDelivery.delivered)
        ).all()
    )
    queued = session.scalar(
        scoped(
            select(func.count()).select_from(Shard).where(Shard.status == ShardStatus.QUEUED),
            Shard.audit_id,
        )
    )
    refused = (
        session.execute(select(EventCount.name, EventCount.count).order_by(EventCount.name)).all()
        if key.is_admin
        else []
    )
    families = [
        _family(
            "memaudit_audits",
            "gauge",
            "Audits by status.",
            by_status(Audit.status, [*AuditStatus.ACTIVE, *AuditStatus.FINAL]),
        ),
        _family(
            "memaudit_shards",
            "gauge",
            "Shards by status.",
            by_status(
                Shard.status,
                [
                    ShardStatus.QUEUED,
                    ShardStatus.RUNNING,
                    ShardStatus.SUCCEEDED,
                    ShardStatus.FAILED,
                    ShardStatus.CANCELLED,
                ],
            ),
        ),
        _family("memaudit_queue_depth", "gauge", "Shards waiting for a worker.", [({}, queued)]),
        "# HELP memaudit_shard_seconds Worker time of finished shards.\n"
        "# TYPE memaudit_shard_seconds summary\n"
        f"memaudit_shard_seconds_sum {float(seconds_sum):g}\n"
        f"memaudit_shard_seconds_count {int(shards_done)}",
        _family(
            "memaudit_tokens_scored_total",
            "counter",
            "Tokens scored by finished shards.",
            [({}, float(tokens_sum))],
        ),
        _family(
            "memaudit_tokens_per_second",
            "gauge",
            "Tokens scored per second of shard time, over all finished shards.",
            [({}, float(tokens_sum) / float(seconds_sum) if seconds_sum else 0.0)],
        ),
        _family(
            "memaudit_webhook_deliveries",
            "counter",
            "Registry webhook deliveries received, by source and outcome.",
            [({"source": source, "status": status}, float(n)) for source, status, n in webhooks],
        ),
        _family(
            "memaudit_refused_total",
            "counter",
            "Refused events kept as counts, not rows (webhook deliveries with a bad signature).",
            [({"event": name}, float(count)) for name, count in refused],
        ),
        _family(
            "memaudit_callback_attempts",
            "counter",
            "Outbound callback attempts, by outcome.",
            [
                ({"outcome": "delivered"}, float(callbacks.get(True, 0))),
                ({"outcome": "failed"}, float(callbacks.get(False, 0))),
            ],
        ),
    ]
    return "\n".join(families) + "\n"
