"""The coverage kind's report section: one strip per document showing which spans of the work
are extractable at p_z >= threshold, with its share, longest run and top passages. Pure:
summary in, figures and tables out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from worker.checks.report_kit import (
    MEMBER_COLOR,
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
        notes.append(f"{summary['unfit']} (too short for one window).")
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
