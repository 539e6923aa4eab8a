"""The data behind each page, from database rows: thin routes call one of these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import audits, notifications
from app.dashboard.headline import Headline, deltas, headlines
from app.dashboard.report import build_report
from app.dashboard.trend import TrendSeries, trend_figure
from core.config import Settings
from core.inspection import mlflow_models
from core.models import ApiKey, Audit, AuditStatus, SampleResult
from core.schemas import AuditPublic
from core.tenancy import visible
from worker.checks.registry import REGISTRY
from worker.checks.report_kit import Chart, figure_json, safe_json

EXPORT_TOP_RECORDS = 25


@dataclass(frozen=True)
class AuditRow:
    audit: AuditPublic
    headlines: list[Headline]
    registry_url: str | None = None  # the audited version's page in MLflow's UI

    @property
    def active(self) -> bool:
        return self.audit.status in AuditStatus.ACTIVE


def _row(session: Session, settings: Settings, audit: Audit) -> AuditRow:
    """The list shows the first headline of each check: one number per question."""
    first_per_check: dict[str, Headline] = {}
    for headline in headlines(audit.summary or {}):
        first_per_check.setdefault(headline.key.split(".")[0], headline)
    return AuditRow(
        audits.to_public(session, settings, audit),
        list(first_per_check.values()),
        mlflow_models.version_ui_url(audit.model_uri or "", settings.mlflow_ui_base),
    )


def audit_list(
    session: Session,
    settings: Settings,
    key: ApiKey,
    filters: Mapping[str, str | None],
    page: int,
    size: int,
) -> dict[str, Any]:
    rows, count = audits.list_audits(
        session,
        key,
        status=filters.get("status"),
        model=None,
        label=filters.get("label"),
        family=filters.get("family"),
        limit=size,
        offset=(page - 1) * size,
    )
    families = session.scalars(
        visible(select(Audit.model_family), Audit.team_id, key)
        .where(Audit.model_family.is_not(None))  # dataset audits have no model
        .distinct()
        .order_by(Audit.model_family)
        .limit(500)
    ).all()
    return {
        "rows": [_row(session, settings, audit) for audit in rows],
        "count": count,
        "page": page,
        "pages": max(1, -(-count // size)),
        "filters": {k: v or "" for k, v in filters.items()},
        "statuses": [*AuditStatus.ACTIVE, *AuditStatus.FINAL],
        "families": list(families),
    }


def _previous_version(session: Session, audit: Audit) -> Audit | None:
    """The model's audit before this one; for a dataset audit, the one before of the same
    dataset content."""
    same_subject = (
        Audit.model_family == audit.model_family
        if audit.model_family is not None
        else (Audit.model_family.is_(None) & (Audit.dataset_sha256 == audit.dataset_sha256))
    )
    return session.scalars(
        select(Audit)
        .where(
            Audit.team_id == audit.team_id,  # a team's own history, whoever reads it
            same_subject,
            Audit.status == AuditStatus.SUCCEEDED,
            Audit.created_at < audit.created_at,
            Audit.id != audit.id,
        )
        .order_by(Audit.created_at.desc())
        .limit(1)
    ).first()


def audit_report(session: Session, settings: Settings, audit: Audit) -> dict[str, Any]:
    previous = _previous_version(session, audit)
    report = build_report(audit)
    return {
        "audit": audits.to_public(session, settings, audit),
        "report": report,
        "tables_json": safe_json([asdict(table) for table in report.tables]),
        "previous": previous.id if previous else None,
        "callbacks": audits.list_callbacks(session, audit) if audit.callback_url else [],
        "notifications": notifications.audit_notifications(session, audit.id),
    }


def _version_label(audit: Audit) -> str:
    label = audit.model_version or audit.created_at.strftime("%Y-%m-%d %H:%M")
    return f"{label} · {audit.id[:6]}"


def _trend_ranges() -> dict[str, tuple[float, float] | None]:
    """Headline keys drawn across versions, in the registry's order, with their y ranges."""
    return {key: span for part in REGISTRY.report_parts() for key, span in part.trend.items()}


def trend_series(history: list[Audit]) -> list[TrendSeries]:
    """One series per headline metric any succeeded version has, oldest version first."""
    done = [a for a in history if a.status == AuditStatus.SUCCEEDED]
    by_audit = [{h.key: h for h in headlines(a.summary or {})} for a in done]
    series = []
    for key, y_range in _trend_ranges().items():
        points = [found.get(key) for found in by_audit]
        present = next((p for p in points if p is not None and p.value is not None), None)
        if present is None:
            continue
        series.append(
            TrendSeries(
                title=present.label,
                percent=present.percent,
                versions=[_version_label(a) for a in done],
                values=[p.value if p else None for p in points],
                lower=[p.ci95[0] if p and p.ci95 else None for p in points],
                upper=[p.ci95[1] if p and p.ci95 else None for p in points],
                y_range=y_range,
            )
        )
    return series


def model_history(
    session: Session, settings: Settings, key: ApiKey, family: str
) -> dict[str, Any] | None:
    query = visible(select(Audit), Audit.team_id, key).where(Audit.model_family == family)
    history = list(session.scalars(query.order_by(Audit.created_at).limit(500)))
    if not history:
        return None
    trend = trend_figure(trend_series(history))
    return {
        "family": family,
        "rows": [_row(session, settings, audit) for audit in reversed(history)],
        "trend": Chart("trend", figure_json(trend)) if trend else None,
    }


def comparison(session: Session, settings: Settings, first: Audit, second: Audit) -> dict[str, Any]:
    names = [_version_label(first), _version_label(second)]
    a, b = first.summary or {}, second.summary or {}
    charts = [
        Chart(chart_id, figure_json(figure))
        for part in REGISTRY.report_parts()
        if part.compare is not None
        for chart_id, figure in part.compare(a, b, names)
    ]
    return {
        "first": audits.to_public(session, settings, first),
        "second": audits.to_public(session, settings, second),
        "names": names,
        "deltas": deltas(a, b),
        "overlays": charts,
    }


def _top_records(session: Session, audit: Audit, check: str) -> list[SampleResult]:
    return list(
        session.scalars(
            select(SampleResult)
            .where(SampleResult.audit_id == audit.id, SampleResult.check == check)
            .order_by(SampleResult.score.desc(), SampleResult.sample_index.desc())
            .limit(EXPORT_TOP_RECORDS)
        )
    )


def export_context(session: Session, settings: Settings, audit: Audit) -> dict[str, Any]:
    context = audit_report(session, settings, audit)
    context["top_records"] = {
        table.check: _top_records(session, audit, table.check) for table in context["report"].tables
    }
    return context
