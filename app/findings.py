"""The verdict in words: one finding per check of an audit, from its family's report part.

Shared by the report page, the exported report.html and the audit JSON the API returns, so the
three never say different things."""

from __future__ import annotations

from core.models import Audit
from worker.checks.registry import REGISTRY
from worker.checks.report_kit import Finding


def audit_findings(audit: Audit) -> list[Finding]:
    """A finding per check whose summary exists, in the audit's order of checks; a kind whose
    package is gone from this host, or whose family declares no sentence, has none."""
    summary, counts = audit.summary or {}, audit.row_counts or {}
    known = [entry for entry in audit.checks if entry["kind"] in REGISTRY.kinds]
    found = []
    for kind, params in REGISTRY.parse_checks(known):
        if not summary.get(kind.name):
            continue
        part = REGISTRY.report_part(REGISTRY.family_of(kind.name))
        build = part.findings.get(kind.name) if part is not None else None
        if build is not None:
            found.append(build(summary[kind.name], params, counts.get(kind.name) or {}))
    return found
