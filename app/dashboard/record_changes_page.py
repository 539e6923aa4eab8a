"""The per-record changes page: the candidate audit against a baseline of the same dataset,
from the same queries as `GET /v1/audits/{id}/compare/{other}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import plotly.graph_objects as go
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import audits, record_changes
from app.record_changes import Comparison, Group
from core.config import Settings
from core.models import ApiKey, Audit, AuditStatus
from core.tenancy import visible
from worker.checks.report_kit import MEMBER_COLOR, NONMEMBER_COLOR, Chart, figure_json, layout

KIND_TITLES = {
    record_changes.NEWLY_EXTRACTABLE: "newly extractable",
    record_changes.NO_LONGER_EXTRACTABLE: "no longer extractable",
    record_changes.NEWLY_ABOVE: "newly above the 1% FPR threshold",
    record_changes.NO_LONGER_ABOVE: "no longer above the 1% FPR threshold",
}
MAX_CHOICES = 100


def comparable_audits(session: Session, key: ApiKey, audit: Audit) -> list[Audit]:
    """Other succeeded audits of the same dataset the key may see, newest first: the baselines
    the report offers for a per-record comparison."""
    query = visible(select(Audit), Audit.team_id, key).where(
        Audit.dataset_sha256 == audit.dataset_sha256,
        Audit.status == AuditStatus.SUCCEEDED,
        Audit.id != audit.id,
    )
    return list(session.scalars(query.order_by(Audit.created_at.desc()).limit(MAX_CHOICES)))


def changes_figure(groups: list[Group]) -> go.Figure | None:
    """Changed records per kind and metric: gains in the candidate warm, losses cool."""
    counted = [g for g in groups if g.computed and g.count]
    if not counted:
        return None
    figure = go.Figure(
        go.Bar(
            x=[g.count for g in counted],
            y=[f"{KIND_TITLES[g.kind]} · {g.metric}" for g in counted],
            orientation="h",
            marker={
                "color": [
                    MEMBER_COLOR if g.kind.startswith("newly") else NONMEMBER_COLOR for g in counted
                ]
            },
        )
    )
    layout(figure, "Changed records", xaxis={"title": "records"}, yaxis={"autorange": "reversed"})
    figure.update_layout(height=120 + 28 * len(counted), margin={"l": 320})
    return figure


def _query(filters: Mapping[str, str | None], **extra: Any) -> str:
    kept = {name: value for name, value in {**filters, **extra}.items() if value}
    return urlencode(kept)


def record_changes_context(
    session: Session,
    settings: Settings,
    comparison: Comparison,
    filters: Mapping[str, str | None],
    page: int,
    size: int,
) -> dict[str, Any]:
    """The page's data: both audits, totals, thresholds, one page of changes, export links."""
    groups = record_changes.select_groups(comparison, **filters)
    count = sum(group.count or 0 for group in groups)
    rows = record_changes.page(session, comparison, groups, size, (page - 1) * size)
    figure = changes_figure(comparison.groups)
    api = f"/v1/audits/{comparison.candidate.id}/compare/{comparison.baseline.id}"
    query = _query(filters)
    return {
        "candidate": audits.to_public(session, settings, comparison.candidate),
        "baseline": audits.to_public(session, settings, comparison.baseline),
        "groups": comparison.groups,
        "totals": record_changes.totals(comparison),
        "kind_titles": KIND_TITLES,
        "rows": rows,
        "count": count,
        "page": page,
        "pages": max(1, -(-count // size)),
        "filters": {name: value or "" for name, value in filters.items()},
        "metrics": sorted({g.metric for g in comparison.groups if g.metric}),
        "page_query": lambda number: _query(filters, page=number),
        "exports": {
            "CSV": f"{api}/changes.csv" + (f"?{query}" if query else ""),
            "Parquet": f"{api}/changes.parquet" + (f"?{query}" if query else ""),
            "JSON": f"{api}" + (f"?{query}" if query else ""),
        },
        "chart": Chart("record-changes", figure_json(figure)) if figure else None,
    }
