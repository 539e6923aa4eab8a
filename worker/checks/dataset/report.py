"""The dataset family's report part: duplication's histogram, headline and largest groups.
Every text shown here was stored through `display.display_text`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.checks.dataset.figures import duplicate_histogram_figure
from worker.checks.report_kit import (
    CONTROL_MEMORISATION,
    Finding,
    Headline,
    ReportPart,
    Section,
    Table,
    charts,
    counted,
    format_number,
)


def duplication_section(summary: Mapping[str, Any]) -> Section:
    rows = [
        [format_number(group["count"]), group.get("example") or "—"]
        for group in summary.get("largest_groups") or []
    ]
    notes = [
        f"{format_number(summary.get('n_records'))} records, "
        f"{format_number(summary.get('n_distinct_texts'))} distinct texts after normalisation "
        "(NFKC, case folded, whitespace collapsed); deduplicating would drop "
        f"{format_number(summary.get('n_excess_copies'))} records."
    ]
    if summary.get("n_skipped"):
        notes.append(f"{summary['n_skipped']:,} records had no text and were skipped.")
    return Section(
        "duplication",
        "Duplication in the corpus",
        charts("duplication", [("histogram", duplicate_histogram_figure(summary))]),
        notes,
        [Table("Largest duplicate groups", ["copies", "example"], rows)] if rows else [],
    )


def duplication_headlines(summary: Mapping[str, Any]) -> list[Headline]:
    return [
        Headline(
            "duplication.duplicate_share",
            "records duplicated",
            summary.get("duplicate_share"),
            None,  # a count over the whole corpus, not an estimate
            True,
            True,
        )
    ]


def duplication_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """Duplicated training text is memorized first (Kandpal et al. 2022): any duplication is
    worth removing, heavy duplication urgently."""
    n = int(summary.get("n_records") or 0)
    duplicated = int(summary.get("n_duplicate_records") or 0)
    if not n:
        return Finding(
            "duplication",
            "Duplication could not be assessed: no record had a text.",
            "unknown",
            CONTROL_MEMORISATION,
            "Give each record its text in the `text` field.",
        )
    share = duplicated / n
    risk = "none" if not duplicated else "high" if share > 0.05 else "medium"
    text = f"{counted(duplicated, n, 'records')} share their text with another record"
    if duplicated:
        text += f"; the largest group has {summary.get('max_copies'):,} copies"
    return Finding(
        "duplication",
        text + ".",
        risk,
        CONTROL_MEMORISATION,
        "Deduplicate the corpus before training (exact, then near duplicates)."
        if duplicated
        else "Keep checking new corpus versions; look for near duplicates too.",
    )


REPORT = ReportPart(
    sections={"duplication": duplication_section},
    headlines={"duplication": duplication_headlines},
    findings={"duplication": duplication_finding},
    trend={"duplication.duplicate_share": (0.0, 1.0)},
)
