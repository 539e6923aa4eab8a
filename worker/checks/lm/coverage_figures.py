"""The coverage kind's report section: one strip per document showing which spans of the work
are extractable at p_z >= threshold, with its share, longest run and top passages. Pure:
summary in, figures and tables out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from worker.checks.lm.coverage import skip_words
from worker.checks.lm.findings import scheme_words
from worker.checks.report_kit import (
    CONTROL_MEMORISATION,
    MEMBER_COLOR,
    Finding,
    Headline,
    Section,
    Table,
    charts,
    layout,
    percent_axis,
)

STRIP_ROW_PX = 28
PASSAGE_CHARS = 120


def _label(strip: Mapping[str, Any], index: int) -> str:
    return str(strip.get("sample_id") or f"document {index + 1}")


def coverage_strip_figure(summary: Mapping[str, Any]) -> go.Figure | None:
    """One row per document, its length scaled to 1: a bar over each extractable span."""
    strips = summary.get("strips") or []
    lead = summary.get("lead")
    if not strips or lead is None:
        return None
    bases, widths, rows, hover = [], [], [], []
    labels = [_label(s, i) for i, s in enumerate(strips)]
    for label, strip in zip(labels, strips, strict=True):
        n = max(int(strip["n_tokens"]), 1)
        for start, end in strip["spans"].get(lead, []):
            bases.append(start / n)
            widths.append((end - start) / n)
            rows.append(label)
            hover.append(f"{label}: tokens {start:,}–{end:,} of {n:,}")
    figure = go.Figure(
        go.Bar(
            base=bases,
            x=widths,
            y=rows,
            orientation="h",
            marker={"color": MEMBER_COLOR},
            hovertext=hover,
            hoverinfo="text",
            name=f"extractable ({lead}, p_z ≥ {summary.get('threshold')})",
            showlegend=True,
        )
    )
    # Every document gets its row, extractable spans or not.
    figure.add_trace(
        go.Bar(
            base=[0] * len(labels),
            x=[0] * len(labels),
            y=labels,
            orientation="h",
            hoverinfo="skip",
            showlegend=False,
        )
    )
    words = "screened, then re-scored exactly" if summary.get("mode") == "screen" else "exact"
    layout(
        figure,
        f"Coverage strips: extractable spans at p_z ≥ {summary.get('threshold')} ({words})",
        xaxis={**percent_axis("position in the work"), "range": [0, 1]},
        yaxis={"autorange": "reversed", "type": "category"},
        barmode="overlay",
    )
    figure.update_layout(height=120 + STRIP_ROW_PX * len(labels))
    return figure


def _passages_table(summary: Mapping[str, Any]) -> Table | None:
    lead = summary.get("lead")
    rows = []
    for i, strip in enumerate(summary.get("strips") or []):
        share = strip["coverage_share"].get(lead, 0.0)
        run = strip["longest_run"].get(lead, 0)
        for passage in strip["top_passages"].get(lead, [])[:3]:
            text = passage["text"]
            rows.append(
                [
                    _label(strip, i),
                    f"{share:.1%}",
                    f"{run:,}",
                    f"{passage['offset']:,}",
                    f"{passage['log10_pz']:.2f}",
                    text if len(text) <= PASSAGE_CHARS else text[:PASSAGE_CHARS] + "…",
                ]
            )
    if not rows:
        return None
    return Table(
        f"Top passages per document ({lead}): share of the work extractable and longest run "
        "in tokens",
        ["document", "share", "longest run", "offset", "log10 p_z", "suffix"],
        rows,
    )


def coverage_section(summary: Mapping[str, Any]) -> Section:
    notes = []
    if summary.get("mode") == "screen":
        notes.append(
            "Screening mode: each suffix was first scored conditioned on all the text before "
            "it (not the exact definition); only windows within the screen margin of the "
            "threshold were re-scored exactly, so a window the screen missed is not shown."
        )
    window = summary.get("window") or {}
    if window:
        counts = f"{summary.get('n_windows', 0):,} windows over {summary.get('n_tokens', 0):,}"
        notes.append(
            f"Windows of {window.get('prefix_tokens')} + {window.get('suffix_tokens')} tokens "
            f"every {window.get('stride')} tokens, each scored alone: {counts} tokens; a window "
            "covers its suffix."
        )
    if summary.get("not_computed"):
        notes.append(f"{summary['not_computed']}.")
    elif summary.get("unfit"):
        notes.append(f"{summary['unfit']}.")
    tables = [t for t in [_passages_table(summary)] if t is not None]
    named = [("strips", coverage_strip_figure(summary))]
    return Section("coverage", "Coverage of whole works", charts("coverage", named), notes, tables)


def coverage_headlines(summary: Mapping[str, Any]) -> list[Headline]:
    lead = summary.get("lead")
    entry = (summary.get("by_scheme") or {}).get(lead) or {}
    return [
        Headline(
            "coverage.share_of_all_tokens",
            f"share of the works extractable ({lead})",
            entry.get("share_of_all_tokens"),
            None,
            True,
            True,
        )
    ]


# A work of which at least this share comes back at p_z >= threshold is a high risk: Cooper et
# al. 2025 report books with a few percent extractable as memorized pieces worth a rights claim.
HIGH_SHARE = 0.01


def _top_passage(strips: Sequence[Mapping[str, Any]], lead: str) -> Mapping[str, Any] | None:
    passages = [
        {**p, "sample_id": strip.get("sample_id")}
        for strip in strips
        for p in (strip.get("top_passages") or {}).get(lead) or []
    ]
    return max(passages, key=lambda p: p["log10_pz"], default=None)


def _unassessed(reasons: Mapping[str, int]) -> Finding:
    """Coverage with no window scanned, worded from why the records had none."""
    counted = {code: n for code, n in reasons.items() if n}
    why = f" ({skip_words(counted)})" if counted else ""
    if set(reasons) == {"window_exceeds_context"}:
        text = "no window of prefix and suffix fits the model's context"
        advice = "Shorten prefix_tokens and suffix_tokens to fit the model's context."
    elif "window_exceeds_context" in reasons:
        text = "no record had a window that fits both the record and the model's context"
        advice = (
            "Audit longer documents, or shorten prefix_tokens and suffix_tokens to fit the "
            "model's context."
        )
    else:
        text = "no document was long enough for one window of prefix and suffix"
        advice = "Audit longer documents, or shorten prefix_tokens and suffix_tokens."
    return Finding(
        "coverage",
        f"Coverage could not be assessed: {text}{why}.",
        "unknown",
        CONTROL_MEMORISATION,
        advice,
    )


def coverage_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """How much of the works comes back, its longest run and likeliest passage, under the lead
    scheme (the first sampled one, else greedy)."""
    lead = summary.get("lead") or "greedy"
    entry = (summary.get("by_scheme") or {}).get(lead) or {}
    share, total = entry.get("share_of_all_tokens"), summary.get("n_tokens") or 0
    n_docs = (summary.get("n_samples") or 0) - (summary.get("n_skipped") or 0)
    if share is None or not total:
        return _unassessed(summary.get("skipped_reasons") or {"too_short": 0})
    threshold = summary.get("threshold")
    run = entry.get("longest_run") or 0
    text = (
        f"{share:.2%} of the {total:,} tokens in {n_docs:,} document"
        f"{'' if n_docs == 1 else 's'} can be extracted at p_z ≥ {threshold:g} under "
        f"{scheme_words(lead)} ({entry.get('documents_with_extractable', 0):,} with any "
        f"extractable passage); the longest extractable run is {run:,} tokens"
    )
    top = _top_passage(summary.get("strips") or [], lead)
    if top is not None:
        quoted = " ".join(str(top.get("text") or "").split())[:PASSAGE_CHARS]
        where = f" in {top['sample_id']}" if top.get("sample_id") else ""
        text += (
            f"; the likeliest passage{where} at token {top['offset']:,} "
            f"(log10 p_z {top['log10_pz']:.2f}) is \u201c{quoted}\u201d"
        )
    if summary.get("mode") == "screen":
        text += " (screened: windows the screen missed are not counted)"
    risk = "high" if share >= HIGH_SHARE else "medium" if share > 0 else "low"
    next_step = (
        "Open the strips and top passages below; remove or deduplicate the work in the "
        "training data, or filter outputs that reproduce it, before release."
        if share > 0
        else "Re-run at a lower threshold or a smaller stride to rule out shorter passages."
    )
    return Finding("coverage", text + ".", risk, CONTROL_MEMORISATION, next_step)
