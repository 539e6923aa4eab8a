"""What an audit report shows, assembled once for the page and for the exported report.html."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from app.dashboard import figures
from app.dashboard.classifier_sections import CLASSIFIER_SECTIONS
from app.dashboard.diffusion_sections import DIFFUSION_SECTIONS
from app.dashboard.headline import Headline, headlines
from app.dashboard.reasoning_sections import REASONING_SECTIONS
from app.dashboard.sections import Section, charts
from app.models import Audit
from worker.checks import parse_checks


@dataclass(frozen=True)
class Column:
    key: str  # a dotted path into the values, `score` or `member`
    label: str
    format: str  # number | percent | bool | int
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    check: str
    rank_description: str
    columns: list[Column]


@dataclass(frozen=True)
class Report:
    headlines: list[Headline]
    sections: list[Section]
    tables: list[TableSpec]
    provenance: list[tuple[str, str]]


def _extraction_section(summary: Mapping[str, Any]) -> Section:
    named: list[tuple[str, go.Figure | None]] = []
    notes = []
    schemes = figures.sampled_schemes(summary)
    if not summary.get("all", {}).get("n"):
        notes.append("No record was long enough for the prefix and suffix.")
    for scheme in schemes if summary.get("all", {}).get("n") else []:
        slug = scheme.replace(".", "_").replace("=", "")
        named += [
            (f"rate-{slug}", figures.extraction_rate_figure(summary, scheme)),
            (f"groups-{slug}", figures.extraction_groups_figure(summary, scheme)),
            (f"pz-{slug}", figures.pz_histogram_figure(summary, scheme)),
            (f"duplicates-{slug}", figures.duplicates_figure(summary, scheme)),
        ]
    if not schemes:
        notes.append("Only greedy decoding was audited: see the greedy rates above.")
    if summary.get("n_skipped"):
        notes.append(f"{summary['n_skipped']:,} records were too short and were skipped.")
    return Section("extraction", "Extraction", charts("extraction", named), notes)


def _membership_section(summary: Mapping[str, Any]) -> Section:
    named: list[tuple[str, go.Figure | None]] = [("roc", figures.roc_figure(summary))]
    for key in summary.get("scores", {}):
        named.append(
            (f"dist-{key.replace('.', '_')}", figures.score_distribution_figure(summary, key))
        )
    return Section(
        "membership", "Membership", charts("membership", named), list(summary.get("warnings", []))
    )


def _loss_section(summary: Mapping[str, Any]) -> Section:
    return Section(
        "loss", "Loss", charts("loss", [("hist", figures.loss_histogram_figure(summary))])
    )


SECTION_BUILDERS = {
    "extraction": _extraction_section,
    "membership": _membership_section,
    "loss": _loss_section,
    **CLASSIFIER_SECTIONS,
    **REASONING_SECTIONS,
    **DIFFUSION_SECTIONS,
}


def _tables(audit: Audit) -> list[TableSpec]:
    tables = []
    for kind, params in parse_checks(audit.checks):
        columns = [Column("score", "score", "number", kind.rank_description)]
        columns += [
            Column(c.key, c.label, c.format, kind.metric_description(c.key))
            for c in kind.columns(params)
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
        ("Model", audit.model_uri),
        ("Model family / version", f"{audit.model_family} / {audit.model_version or '—'}"),
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
    sections = [
        SECTION_BUILDERS[kind](summary[kind])
        for kind in (entry["kind"] for entry in audit.checks)
        if kind in SECTION_BUILDERS and summary.get(kind)
    ]
    return Report(headlines(summary), sections, _tables(audit), _provenance(audit))
