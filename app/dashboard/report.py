"""What an audit report shows, assembled once for the page and for the exported report.html."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.dashboard.headline import headlines
from app.findings import audit_findings
from core.models import Audit
from worker.checks.registry import REGISTRY
from worker.checks.report_kit import Finding, Headline, Section


@dataclass(frozen=True)
class Column:
    key: str  # a dotted path into the values, `score` or `member`
    label: str
    format: str  # number | percent | bool | int
    description: str = ""
    unsortable: bool = False  # shown, but past the indexed sort slots (records.js reads it)


@dataclass(frozen=True)
class TableSpec:
    check: str
    rank_description: str
    columns: list[Column]


@dataclass(frozen=True)
class Report:
    findings: list[Finding]
    headlines: list[Headline]
    sections: list[Section]
    tables: list[TableSpec]
    provenance: list[tuple[str, str]]


def _section(kind: str, summary: Mapping[str, Any]) -> Section | None:
    """The kind's section from its family's report part; None for a kind that draws none."""
    part = REGISTRY.report_part(REGISTRY.family_of(kind))
    build = part.sections.get(kind) if part is not None else None
    return build(summary) if build is not None else None


def _tables(audit: Audit) -> list[TableSpec]:
    tables = []
    # A kind whose package is no longer installed has no table (and no section) to draw.
    known = [entry for entry in audit.checks if entry["kind"] in REGISTRY.kinds]
    for kind, params in REGISTRY.parse_checks(known):
        columns = [Column("score", "score", "number", kind.rank_description)]
        columns += [
            Column(c.key, c.label, c.format, kind.metric_description(c.key))
            for c in kind.columns(params)
        ]
        # Columns past the sort slots (a membership check's later scores) are still shown.
        sortable = len(columns) - 1
        columns += [
            Column(c.key, c.label, c.format, kind.metric_description(c.key), unsortable=True)
            for c in kind.table_columns(params)[sortable:]
        ]
        tables.append(TableSpec(kind.name, kind.rank_description, columns))
    return tables


def _duration(audit: Audit) -> str:
    if audit.started_at is None or audit.finished_at is None:
        return ""
    return f"{(audit.finished_at - audit.started_at).total_seconds():.1f} s"


def _provenance(audit: Audit) -> list[tuple[str, str]]:
    info = audit.provenance or {}
    timings = info.get("timings", {})
    rows = [
        ("Model", audit.model_uri or "none: a dataset audit"),
        ("Model family / version", f"{audit.model_family or '—'} / {audit.model_version or '—'}"),
        ("Model sha256", _text(info.get("model_sha256"))),
        ("Reference model", audit.reference_model_uri or "—"),
        ("Dataset", audit.dataset_uri),
        ("Dataset sha256", audit.dataset_sha256),
        ("Records", f"{audit.n_samples:,}"),
        ("Code version", _text(info.get("code_version"))),
        ("Devices", _text(info.get("devices"))),
        ("Dtypes", _text(info.get("dtypes"))),
        ("Tokens scored", f"{info['n_tokens']:,}" if info.get("n_tokens") else "—"),
        ("Wall time", _duration(audit) or "—"),
        (
            "Shards",
            f"{timings.get('n_shards', 0)} ({timings.get('retried_shards', 0)} retried), "
            f"{timings.get('shard_seconds', 0)} s of worker time",
        ),
        ("Params", json.dumps(audit.checks, separators=(",", ":"))),
        ("Labels", json.dumps(audit.labels or {}, separators=(",", ":"))),
    ]
    return rows


def _text(value: Any) -> str:
    if value in (None, "", []):
        return "—"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def build_report(audit: Audit) -> Report:
    summary = audit.summary or {}
    drawn = (
        _section(kind, summary[kind])
        for kind in (entry["kind"] for entry in audit.checks)
        if kind in REGISTRY.kinds and summary.get(kind)
    )
    sections = [section for section in drawn if section is not None]
    return Report(
        audit_findings(audit), headlines(summary), sections, _tables(audit), _provenance(audit)
    )
