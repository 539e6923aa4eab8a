"""The `approximate` kind's report part: approximate beside verbatim extraction rates per scheme,
and the histogram of each similarity per scheme. Pure functions, summary in, figures out."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import plotly.graph_objects as go

from worker.checks.report_kit import (
    CONTROL_MEMORISATION,
    GREEDY_COLOR,
    GROUP_NAMES,
    Finding,
    Headline,
    Section,
    Table,
    charts,
    counted,
    layout,
    percent_axis,
    percent_interval_text,
    proportion_risk,
)

APPROX_COLOR = "#d97706"  # approximate extraction: the wider net
VERBATIM_COLOR = GREEDY_COLOR  # verbatim: what an exact filter sees
SCHEME_COLORS = ("#111827", "#2563eb", "#059669", "#db2777", "#7c3aed", "#475569")
METRIC_AXES = {
    "rouge_l": "ROUGE-L F1 (token ids)",
    "lcs_substring_fraction": "longest common substring / suffix length",
    "edit_similarity": "1 − Levenshtein / max length",
    "bleu": "BLEU-4, Chen & Cherry method 1",
}


def _error(entries: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Asymmetric 95% Wilson error bars around each rate."""
    rates = [e.get("rate") or 0.0 for e in entries]
    lows = [(e.get("ci95") or [None, None])[0] for e in entries]
    highs = [(e.get("ci95") or [None, None])[1] for e in entries]
    return {
        "type": "data",
        "symmetric": False,
        "array": [0.0 if h is None else h - r for h, r in zip(highs, rates, strict=True)],
        "arrayminus": [0.0 if lo is None else r - lo for lo, r in zip(lows, rates, strict=True)],
    }


def rates_figure(summary: Mapping[str, Any], group: str = "all") -> go.Figure | None:
    """Per scheme, the share of records approximately and verbatim extracted, with 95% CIs."""
    stats = summary.get(group) or {}
    schemes = summary.get("schemes") or []
    if not stats.get("n") or not schemes:
        return None
    figure = go.Figure()
    for key, name, color in (
        ("approx", "approximate", APPROX_COLOR),
        ("verbatim", "verbatim", VERBATIM_COLOR),
    ):
        entries = [stats[key][scheme] for scheme in schemes]
        figure.add_trace(
            go.Bar(
                x=schemes,
                y=[e.get("rate") for e in entries],
                name=name,
                marker={"color": color},
                error_y=_error(entries),
                customdata=[e.get("count") for e in entries],
                hovertemplate="%{x}<br>%{y:.1%} (%{customdata:,} records)<extra>"
                + name
                + "</extra>",
            )
        )
    figure.update_layout(barmode="group")
    return layout(
        figure,
        f"Approximate and verbatim extraction · {GROUP_NAMES.get(group, group)}",
        xaxis={"title": "decoding scheme"},
        yaxis={**percent_axis("records extracted"), "range": [0, 1.02]},
    )


def metric_histogram_figure(summary: Mapping[str, Any], metric: str) -> go.Figure | None:
    """One metric's distribution over the records, one overlaid series per scheme, with the
    threshold as a vertical line when it is set."""
    histogram = (summary.get("histograms") or {}).get(metric) or {}
    edges = histogram.get("edges") or []
    if not edges:
        return None
    centres = [(a + b) / 2 for a, b in pairwise(edges)]
    width = edges[1] - edges[0]
    figure = go.Figure(
        [
            go.Bar(
                x=centres,
                y=counts,
                width=width,
                name=scheme,
                opacity=0.7,
                marker={"color": SCHEME_COLORS[index % len(SCHEME_COLORS)], "line": {"width": 0}},
            )
            for index, (scheme, counts) in enumerate(histogram["counts"].items())
        ]
    )
    figure.update_layout(barmode="overlay", bargap=0)
    threshold = (summary.get("thresholds") or {}).get(metric)
    if threshold is not None:
        figure.add_vline(
            x=threshold, line={"dash": "dash", "color": APPROX_COLOR}, annotation_text="threshold"
        )
    title = f"{METRIC_AXES.get(metric, metric)} · best of each record's generations"
    return layout(
        figure, title, xaxis={"title": METRIC_AXES.get(metric, metric)}, yaxis={"title": "records"}
    )


def _rates_table(summary: Mapping[str, Any]) -> Table:
    groups = [g for g in ("all", "members", "nonmembers") if (summary.get(g) or {}).get("n")]
    rows = []
    for scheme in summary.get("schemes") or []:
        for group in groups:
            stats = summary[group]
            approx, verbatim = stats["approx"][scheme], stats["verbatim"][scheme]
            rows.append(
                [
                    scheme,
                    f"{GROUP_NAMES.get(group, group)} ({stats['n']:,})",
                    percent_interval_text(approx.get("rate"), approx.get("ci95")),
                    percent_interval_text(verbatim.get("rate"), verbatim.get("ci95")),
                ]
            )
    header = ["scheme", "records", "approximately extracted", "verbatim extracted"]
    return Table("Approximate beside verbatim extraction, same records", header, rows)


def _notes(summary: Mapping[str, Any]) -> list[str]:
    thresholds = summary.get("thresholds") or {}
    bars = ", ".join(f"{METRIC_AXES.get(k, k)} ≥ {v:g}" for k, v in thresholds.items())
    notes = [
        f"A record is approximately extracted under a scheme when a generation reaches any of: "
        f"{bars} (Ippolito et al. 2023). Metrics compare token ids over "
        f"{summary.get('suffix_tokens', '—')} suffix tokens; BLEU smoothing: "
        f"{summary.get('bleu_smoothing', '—')}.",
        f"Sampled schemes draw {summary.get('samples_per_sampled_scheme', '—')} generations per "
        "record from seeded generators; the best of them is reported (the mean is in each "
        "record's values).",
    ]
    if summary.get("unfit"):
        notes.append(f"{summary['unfit']}.")
    return notes


def approximate_section(summary: Mapping[str, Any]) -> Section:
    named: list[tuple[str, go.Figure | None]] = [("rates", rates_figure(summary))]
    named += [(f"rates-{g}", rates_figure(summary, g)) for g in ("members", "nonmembers")]
    named += [
        (f"hist-{metric}", metric_histogram_figure(summary, metric))
        for metric in (summary.get("histograms") or {})
    ]
    tables = [_rates_table(summary)] if (summary.get("all") or {}).get("n") else []
    return Section(
        "approximate",
        "Approximate memorization",
        charts("approximate", named),
        _notes(summary),
        tables,
    )


def approximate_headlines(summary: Mapping[str, Any]) -> list[Headline]:
    """The share approximately extracted under any scheme, beside the verbatim share."""
    stats = summary.get("all") or {}
    if not stats.get("n"):
        return []
    result = []
    for key, label in (("approx_any", "Approximate extraction"), ("verbatim_any", "Verbatim")):
        entry = stats[key]
        ci = entry.get("ci95") or [None, None]
        result.append(
            Headline(
                f"approximate.all.{key}",
                f"{label} (any scheme)",
                entry.get("rate"),
                (ci[0], ci[1]),
                True,
                True,
                f"{stats['n']:,} records",
            )
        )
    return result


def approximate_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """How many training records the model reproduces approximately, beside how many verbatim:
    the gap is what a verbatim output filter would miss."""
    labelled = bool((summary.get("members") or {}).get("n"))
    group, noun = ("members", "training records") if labelled else ("all", "records")
    stats = summary.get(group) or {}
    n = stats.get("n") or 0
    if not n:
        return Finding(
            "approximate",
            "Approximate memorization could not be assessed: no record held the prefix and suffix.",
            "unknown",
            CONTROL_MEMORISATION,
            "Audit longer records, or shorten prefix_tokens and suffix_tokens.",
        )
    approx = stats["approx_any"]["count"]
    verbatim = stats["verbatim_any"]["count"]
    text = (
        f"{counted(approx, n, noun)} are reproduced approximately by some decoding scheme; "
        f"{verbatim:,} of them verbatim, so a verbatim filter would miss {approx - verbatim:,}."
    )
    others = summary.get("nonmembers") or {}
    if labelled and others.get("n"):
        shown = others["approx_any"]["count"]
        text += f" Non-members, for comparison: {counted(shown, others['n'], 'records')}."
    risk = proportion_risk(approx, n)
    next_step = (
        "Open the records with the highest ROUGE-L below; a verbatim output filter does not "
        "stop near-copies: deduplicate or remove them from the training data."
        if risk in ("high", "medium")
        else "Re-run on each new version with records drawn from the training data."
    )
    return Finding("approximate", text, risk, CONTROL_MEMORISATION, next_step)
