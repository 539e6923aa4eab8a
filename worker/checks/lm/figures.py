"""The LM family's charts: extraction rates and (n,p) curves, membership ROC and score
distributions, loss. Pure functions, summary in, Figure out; colours fixed per meaning."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from core.check_kinds import metric_family
from worker.checks.report_kit import (
    GREEDY_COLOR,
    GROUP_COLORS,
    GROUP_NAMES,
    P_COLORS,
    groups_in,
    histogram_figure,
    layout,
    percent_axis,
)

SCORE_COLORS = {
    "loss": "#2563eb",
    "zlib": "#7c3aed",
    "lowercase": "#db2777",
    "mink": "#059669",
    "minkpp": "#d97706",
    "ref": "#475569",
    "recall": "#0e7490",
    "con_recall": "#4d7c0f",
    "dc_pdd": "#b91c1c",
    "pac": "#0891b2",
    "neighbourhood": "#65a30d",
}
# What each membership score's axis shows: every score is oriented higher = more member-like,
# so the `loss` score is the log-likelihood, the negated loss, and is labelled as such.
SCORE_AXES = {
    "loss": "log-likelihood (−loss), nats/token",
    "zlib": "log-likelihood / zlib-compressed bytes",
    "lowercase": "ll(lowercased) / ll(text)",
    "mink": "mean of the lowest-k% token log-probs, nats",
    "minkpp": "Min-K%++, standard units",
    "ref": "ll(target) − ll(reference), nats",
    "recall": "ReCaLL: ll(x | non-member prefix) / ll(x)",
    "con_recall": "Con-ReCall: (ll(x | P_non) − γ·ll(x | P_mem)) / ll(x)",
    "dc_pdd": "DC-PDD: mean capped p·log(1/f) over first occurrences, nats",
    "pac": "PD(augmented) − PD(text), nats (PAC negated)",
    "neighbourhood": "mean neighbour loss − loss, nats/token",
}
COMPARE_DASH = ("solid", "dash")
FPR_MARKS = (0.001, 0.01)


def score_color(key: str) -> str:
    """`minkpp_0.2` and `minkpp_0.5` share Min-K%++'s colour; families never share one."""
    return SCORE_COLORS.get(metric_family(key), "#64748b")


def _p_keys(extraction: Mapping[str, Any]) -> list[str]:
    return [f"{p:g}" for p in extraction.get("p_grid", [])]


def headline_p(extraction: Mapping[str, Any]) -> str | None:
    """The p shown when one curve must stand for the grid: 0.9 when asked for, else the middle."""
    keys = _p_keys(extraction)
    return "0.9" if "0.9" in keys else (keys[len(keys) // 2] if keys else None)


def sampled_schemes(extraction: Mapping[str, Any]) -> list[str]:
    """Schemes whose (n,p) curves carry information (greedy's p_z is 0 or 1)."""
    return [name for name in extraction.get("schemes", []) if name != "greedy"]


def _rate_curve(
    n_grid: Sequence[int], rates: Sequence[float], name: str, color: str, dash: str = "solid"
) -> go.Scatter:
    return go.Scatter(
        x=list(n_grid),
        y=list(rates),
        mode="lines+markers",
        name=name,
        line={"color": color, "width": 2, "dash": dash},
        marker={"size": 4},
        hovertemplate="n = %{x:,}<br>rate = %{y:.2%}<extra>" + name + "</extra>",
    )


def _greedy_line(
    n_grid: Sequence[int], rate: float, name: str, color: str, dash: str = "dot"
) -> go.Scatter:
    """The greedy rate does not depend on n: a flat line across the n axis."""
    return go.Scatter(
        x=[n_grid[0], n_grid[-1]],
        y=[rate, rate],
        mode="lines",
        name=name,
        line={"color": color, "dash": dash, "width": 2},
        hovertemplate="greedy rate = %{y:.2%}<extra>" + name + "</extra>",
    )


def extraction_rate_figure(
    extraction: Mapping[str, Any], scheme: str, group: str = "all"
) -> go.Figure:
    """(n,p)-extraction rate against n, one curve per p, with the greedy rate as a line."""
    stats = extraction[group]
    n_grid = extraction["n_grid"]
    figure = go.Figure(
        [
            _rate_curve(
                n_grid, stats["rates"][scheme][p], f"p = {p}", P_COLORS[index % len(P_COLORS)]
            )
            for index, p in enumerate(_p_keys(extraction))
        ]
    )
    figure.add_trace(_greedy_line(n_grid, stats["greedy_rate"], "greedy", GREEDY_COLOR))
    return layout(
        figure,
        f"(n,p)-extraction rate · {scheme} · {GROUP_NAMES[group]}",
        xaxis={"title": "queries n", "type": "log"},
        yaxis=percent_axis("records extracted"),
    )


def extraction_groups_figure(extraction: Mapping[str, Any], scheme: str) -> go.Figure | None:
    """Members against non-members at the headline p; None without member labels."""
    p = headline_p(extraction)
    groups = [g for g in ("members", "nonmembers") if extraction.get(g, {}).get("n")]
    if p is None or not groups:
        return None
    n_grid = extraction["n_grid"]
    figure = go.Figure()
    for group in groups:
        stats, color, name = extraction[group], GROUP_COLORS[group], GROUP_NAMES[group]
        figure.add_trace(_rate_curve(n_grid, stats["rates"][scheme][p], f"{name} (n,{p})", color))
        figure.add_trace(_greedy_line(n_grid, stats["greedy_rate"], f"{name} greedy", color))
    return layout(
        figure,
        f"Members vs non-members · {scheme} · p = {p}",
        xaxis={"title": "queries n", "type": "log"},
        yaxis=percent_axis("records extracted"),
    )


def pz_histogram_figure(extraction: Mapping[str, Any], scheme: str) -> go.Figure | None:
    histogram = extraction.get("log10_pz_histogram", {}).get(scheme)
    if not histogram:
        return None
    missing = histogram.get("n_missing", {})
    zero = sum(missing.get(g, 0) for g in groups_in(histogram))
    note = f"{zero:,} with p_z = 0 (a token outside the sampler's support)" if zero else ""
    return histogram_figure(histogram, f"log10 p_z · {scheme}", "log10 p_z", note)


def duplicates_figure(extraction: Mapping[str, Any], scheme: str) -> go.Figure | None:
    """Greedy and (n,p) rates by how often a record was duplicated in training."""
    by_duplicates = extraction.get("by_duplicates")
    p = headline_p(extraction)
    if not by_duplicates or p is None:
        return None
    # Measured corpus counts come in bins, in order; a `duplicates` field gives exact counts.
    measured = extraction.get("duplicates_source") == "corpus_count"
    counts = extraction["duplicates_bins"] if measured else sorted(by_duplicates, key=int)
    groups = [by_duplicates[c] for c in counts]
    axis = "window occurrences in the linked corpus" if measured else "copies in the training data"
    unit = "occurrences" if measured else "copies"
    n_max = extraction["n_grid"][-1]
    figure = go.Figure(
        [
            go.Bar(
                x=counts,
                y=[g["greedy_rate"] for g in groups],
                name="greedy",
                marker={"color": GREEDY_COLOR},
                customdata=[g["n"] for g in groups],
                hovertemplate="%{x} " + unit + ": %{y:.1%} of %{customdata} records<extra></extra>",
            ),
            go.Bar(
                x=counts,
                y=[g["rates"][scheme][p][-1] for g in groups],
                name=f"(n={n_max:,}, p={p}) · {scheme}",
                marker={"color": P_COLORS[3]},
            ),
        ]
    )
    return layout(
        figure,
        "Extraction rate by duplicate count",
        xaxis={"title": axis, "type": "category"},
        yaxis=percent_axis("records extracted"),
    )


def _roc_points(entry: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """Points a log-log plot can show (FPR and TPR above 0)."""
    pairs = [(f, t) for f, t in zip(entry["roc"]["fpr"], entry["roc"]["tpr"], strict=True) if f > 0]
    return [f for f, _ in pairs], [t if t > 0 else None for _, t in pairs]


def _roc_traces(key: str, entry: Mapping[str, Any], dash: str, suffix: str) -> list[go.Scatter]:
    fpr, tpr = _roc_points(entry)
    auc = entry["auroc"]["value"]
    color = score_color(key)
    traces = [
        go.Scatter(
            x=fpr,
            y=tpr,
            mode="lines",
            name=f"{key}{suffix} · AUC {auc:.3f}",
            line={"color": color, "dash": dash, "width": 2},
            legendgroup=key + suffix,
            hovertemplate="FPR %{x:.3%}<br>TPR %{y:.2%}<extra>" + key + "</extra>",
        )
    ]
    marks = [(alpha, entry.get(f"tpr_at_{alpha:g}_fpr", {}).get("value")) for alpha in FPR_MARKS]
    marks = [(alpha, value) for alpha, value in marks if value]
    if marks:
        traces.append(
            go.Scatter(
                x=[alpha for alpha, _ in marks],
                y=[value for _, value in marks],
                mode="markers",
                marker={"color": color, "size": 9, "symbol": "diamond"},
                name=f"{key}{suffix} TPR @ 0.1% / 1% FPR",
                legendgroup=key + suffix,
                showlegend=False,
                hovertemplate="TPR %{y:.2%} at FPR %{x:.1%}<extra>" + key + "</extra>",
            )
        )
    return traces


def _chance_line(low: float) -> go.Scatter:
    return go.Scatter(
        x=[low, 1],
        y=[low, 1],
        mode="lines",
        name="chance",
        line={"color": "#9ca3af", "dash": "dot", "width": 1},
        hoverinfo="skip",
    )


def _scored(membership: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        key: entry
        for key, entry in membership.get("scores", {}).items()
        if entry.get("roc") and (entry.get("auroc") or {}).get("value") is not None
    }


def _roc_layout(figure: go.Figure, title: str, lowest_fpr: float) -> go.Figure:
    decade = max(math.floor(math.log10(lowest_fpr)), -8)  # the decade holding the lowest FPR
    low = 10.0**decade
    figure.add_trace(_chance_line(low))
    layout(
        figure,
        title,
        xaxis={"title": "false positive rate", "type": "log", "range": [decade, 0]},
        yaxis={"title": "true positive rate", "type": "log", "range": [decade, 0]},
    )
    # Below the chance line a useful ROC never goes: the legend sits there, inside the axes.
    curves = sum(1 for trace in figure.data if trace.showlegend is not False)
    figure.update_layout(
        height=max(380, 150 + 19 * curves),
        legend={
            "orientation": "v",
            "x": 0.99,
            "y": 0.02,
            "xanchor": "right",
            "yanchor": "bottom",
            "bgcolor": "rgba(255,255,255,0.85)",
            "font": {"size": 11},
        },
    )
    return figure


def _lowest_fpr(entries: Sequence[Mapping[str, Any]]) -> float:
    positive = [f for e in entries for f in e["roc"]["fpr"] if f > 0]
    return min([*positive, FPR_MARKS[0]])


def roc_figure(membership: Mapping[str, Any]) -> go.Figure | None:
    """ROC per score on log-log axes (the low-FPR corner is what matters), TPR marks at
    0.1% and 1% FPR; None without members and non-members."""
    scored = _scored(membership)
    if not scored:
        return None
    figure = go.Figure()
    for key, entry in scored.items():
        for trace in _roc_traces(key, entry, "solid", ""):
            figure.add_trace(trace)
    return _roc_layout(figure, "Membership ROC (log-log)", _lowest_fpr(list(scored.values())))


def score_axis(key: str) -> str:
    """What a membership score's values are, with their direction (`minkpp_0.2` is Min-K%++)."""
    return f"{SCORE_AXES.get(metric_family(key), key)} (higher = more member-like)"


def score_distribution_figure(membership: Mapping[str, Any], key: str) -> go.Figure | None:
    entry = membership.get("scores", {}).get(key, {})
    histogram = entry.get("histogram")
    if not histogram:
        return None
    groups = "members vs non-members" if "all" not in histogram.get("counts", {}) else "records"
    return histogram_figure(histogram, f"{key} score: {groups}", score_axis(key))


LOSS_AXIS = "loss (mean negative log-likelihood), nats/token (lower = more familiar)"


def loss_histogram_figure(loss: Mapping[str, Any]) -> go.Figure | None:
    """Per-record loss as loss: positive nats/token, never the negated log-likelihood."""
    histogram = loss.get("histogram")
    return histogram_figure(histogram, "Per-record loss", LOSS_AXIS) if histogram else None


def compare_rates_figure(
    extractions: Sequence[Mapping[str, Any]], names: Sequence[str], scheme: str
) -> go.Figure | None:
    """Two audits' (n,p) curves at the headline p: first solid, second dashed."""
    figure = go.Figure()
    for extraction, name, dash in zip(extractions, names, COMPARE_DASH, strict=False):
        p = headline_p(extraction)
        rates = extraction.get("all", {}).get("rates", {}).get(scheme, {})
        if p is None or p not in rates:
            continue
        n_grid = extraction["n_grid"]
        figure.add_trace(_rate_curve(n_grid, rates[p], f"{name} (n,{p})", P_COLORS[3], dash))
        greedy_rate = extraction["all"]["greedy_rate"]
        figure.add_trace(_greedy_line(n_grid, greedy_rate, f"{name} greedy", GREEDY_COLOR, dash))
    if not figure.data:
        return None
    return layout(
        figure,
        f"(n,p)-extraction · {scheme}",
        xaxis={"title": "queries n", "type": "log"},
        yaxis=percent_axis("records extracted"),
    )


def compare_roc_figure(
    memberships: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> go.Figure | None:
    figure = go.Figure()
    entries = []
    for membership, name, dash in zip(memberships, names, COMPARE_DASH, strict=False):
        for key, entry in _scored(membership).items():
            entries.append(entry)
            for trace in _roc_traces(key, entry, dash, f" · {name}"):
                figure.add_trace(trace)
    if not entries:
        return None
    return _roc_layout(figure, "Membership ROC (log-log)", _lowest_fpr(entries))
