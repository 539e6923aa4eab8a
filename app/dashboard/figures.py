"""Every chart of the dashboard and the exported report: pure functions, summary in, Figure out.

They read only the summaries that finalize stores (histograms included), never per-sample
rows, so a report over a million samples is drawn from a few hundred numbers. Colours are
fixed per meaning: members, non-members, and each membership score look the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from worker.check_types import metric_family

MEMBER_COLOR = "#c2410c"  # training data: warm
NONMEMBER_COLOR = "#0f766e"  # held-out data: cool
ALL_COLOR = "#334e68"
GREEDY_COLOR = "#111827"
GROUP_COLORS = {"members": MEMBER_COLOR, "nonmembers": NONMEMBER_COLOR, "all": ALL_COLOR}
GROUP_NAMES = {"members": "members", "nonmembers": "non-members", "all": "all records"}
SCORE_COLORS = {
    "loss": "#2563eb",
    "zlib": "#7c3aed",
    "lowercase": "#db2777",
    "mink": "#059669",
    "minkpp": "#d97706",
    "ref": "#475569",
}
# One colour per p of the (n,p) grid, light to dark: a higher p is a stricter claim.
P_COLORS = ("#93c5fd", "#60a5fa", "#3b82f6", "#1d4ed8", "#1e3a8a", "#172554")
COMPARE_DASH = ("solid", "dash")
FPR_MARKS = (0.001, 0.01)


def score_color(key: str) -> str:
    """`minkpp_0.2` and `minkpp_0.5` share Min-K%++'s colour; families never share one."""
    return SCORE_COLORS.get(metric_family(key), "#64748b")


def _layout(figure: go.Figure, title: str, **axes: Any) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}},
        template="plotly_white",
        font={"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
        margin={"l": 56, "r": 16, "t": 48, "b": 48},
        height=340,
        legend={"orientation": "h", "y": -0.22, "x": 0},
        hovermode="closest",
        **axes,
    )
    return figure


def image_grid_figure(
    images: list[Any], titles: list[str], columns: int, title: str, row_height: int = 150
) -> go.Figure:
    """Greyscale images (2-D lists) in a grid, each under its title: dark is high."""
    from plotly.subplots import make_subplots

    rows = math.ceil(len(images) / columns)
    figure = make_subplots(
        rows, columns, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.12
    )
    for i, image in enumerate(images):
        figure.add_trace(
            go.Heatmap(
                z=image,
                colorscale="Greys",
                reversescale=True,
                showscale=False,
                hovertemplate="%{z:.2f}<extra></extra>",
            ),
            row=i // columns + 1,
            col=i % columns + 1,
        )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    figure.update_annotations(font={"size": 10})
    figure = _layout(figure, title)
    figure.update_layout(height=row_height * rows + 80)
    return figure


def _percent_axis(title: str) -> dict[str, Any]:
    return {"title": title, "tickformat": ".0%", "rangemode": "tozero"}


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
    return _layout(
        figure,
        f"(n,p)-extraction rate · {scheme} · {GROUP_NAMES[group]}",
        xaxis={"title": "queries n", "type": "log"},
        yaxis=_percent_axis("records extracted"),
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
    return _layout(
        figure,
        f"Members vs non-members · {scheme} · p = {p}",
        xaxis={"title": "queries n", "type": "log"},
        yaxis=_percent_axis("records extracted"),
    )


def _bars(histogram: Mapping[str, Any], groups: Sequence[str]) -> list[go.Bar]:
    edges = histogram["edges"]
    centres = [(a + b) / 2 for a, b in pairwise(edges)]
    width = edges[1] - edges[0] if len(edges) > 1 else 1.0
    return [
        go.Bar(
            x=centres,
            y=histogram["counts"][group],
            width=width,
            name=GROUP_NAMES[group],
            marker={"color": GROUP_COLORS[group], "line": {"width": 0}},
            opacity=0.65 if len(groups) > 1 else 0.9,
        )
        for group in groups
    ]


def _groups_in(histogram: Mapping[str, Any]) -> list[str]:
    counts = histogram.get("counts", {})
    labelled = [g for g in ("members", "nonmembers") if g in counts]
    return labelled or [g for g in ("all",) if g in counts]


def histogram_figure(
    histogram: Mapping[str, Any], title: str, x_title: str, note: str = ""
) -> go.Figure | None:
    """Overlaid counts per group on shared bins; None when nothing was finite."""
    if not histogram.get("edges"):
        return None
    groups = _groups_in(histogram)
    figure = go.Figure(_bars(histogram, groups))
    figure.update_layout(barmode="overlay", bargap=0)
    if note:
        figure.add_annotation(
            text=note, xref="paper", yref="paper", x=1, y=1.02, showarrow=False, xanchor="right"
        )
    return _layout(figure, title, xaxis={"title": x_title}, yaxis={"title": "records"})


def pz_histogram_figure(extraction: Mapping[str, Any], scheme: str) -> go.Figure | None:
    histogram = extraction.get("log10_pz_histogram", {}).get(scheme)
    if not histogram:
        return None
    missing = histogram.get("n_missing", {})
    zero = sum(missing.get(g, 0) for g in _groups_in(histogram))
    note = f"{zero:,} with p_z = 0 (a token outside the sampler's support)" if zero else ""
    return histogram_figure(histogram, f"log10 p_z · {scheme}", "log10 p_z", note)


def duplicates_figure(extraction: Mapping[str, Any], scheme: str) -> go.Figure | None:
    """Greedy and (n,p) rates by how often a record was duplicated in training."""
    by_duplicates = extraction.get("by_duplicates")
    p = headline_p(extraction)
    if not by_duplicates or p is None:
        return None
    counts = sorted(by_duplicates, key=int)
    groups = [by_duplicates[c] for c in counts]
    n_max = extraction["n_grid"][-1]
    figure = go.Figure(
        [
            go.Bar(
                x=counts,
                y=[g["greedy_rate"] for g in groups],
                name="greedy",
                marker={"color": GREEDY_COLOR},
                customdata=[g["n"] for g in groups],
                hovertemplate="%{x} copies: %{y:.1%} of %{customdata} records<extra></extra>",
            ),
            go.Bar(
                x=counts,
                y=[g["rates"][scheme][p][-1] for g in groups],
                name=f"(n={n_max:,}, p={p}) · {scheme}",
                marker={"color": P_COLORS[3]},
            ),
        ]
    )
    return _layout(
        figure,
        "Extraction rate by duplicate count",
        xaxis={"title": "copies in the training data", "type": "category"},
        yaxis=_percent_axis("records extracted"),
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
    _layout(
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


def score_distribution_figure(membership: Mapping[str, Any], key: str) -> go.Figure | None:
    entry = membership.get("scores", {}).get(key, {})
    histogram = entry.get("histogram")
    if not histogram:
        return None
    return histogram_figure(
        histogram, f"{key}: members vs non-members", f"{key} (higher = more member-like)"
    )


def loss_histogram_figure(loss: Mapping[str, Any]) -> go.Figure | None:
    histogram = loss.get("histogram")
    return histogram_figure(histogram, "Per-record loss", "nats / token") if histogram else None


@dataclass(frozen=True)
class TrendSeries:
    title: str
    percent: bool
    versions: list[str]
    values: list[float | None]
    lower: list[float | None]
    upper: list[float | None]
    y_range: tuple[float, float] | None = None  # bounded metrics keep their whole scale


def trend_figure(series: Sequence[TrendSeries]) -> go.Figure | None:
    """Headline metrics across a model's versions, one panel per metric, with 95% CIs."""
    if not series:
        return None
    figure = make_subplots(
        rows=len(series),
        cols=1,
        shared_xaxes=True,
        subplot_titles=[s.title for s in series],
        vertical_spacing=0.12 / max(len(series) - 1, 1) + 0.04,
    )
    for row, item in enumerate(series, start=1):
        plus = [
            None if u is None or v is None else u - v
            for u, v in zip(item.upper, item.values, strict=True)
        ]
        minus = [
            None if lo is None or v is None else v - lo
            for lo, v in zip(item.lower, item.values, strict=True)
        ]
        figure.add_trace(
            go.Scatter(
                x=item.versions,
                y=item.values,
                mode="lines+markers",
                name=item.title,
                line={"color": P_COLORS[3 + row % 3]},
                error_y={"type": "data", "array": plus, "arrayminus": minus, "visible": True},
                showlegend=False,
            ),
            row=row,
            col=1,
        )
        if item.percent:
            figure.update_yaxes(tickformat=".0%", row=row, col=1)
        if item.y_range:
            figure.update_yaxes(range=list(item.y_range), row=row, col=1)
    figure.update_xaxes(type="category", title=None)
    _layout(figure, "Across versions")
    figure.update_layout(height=220 * len(series) + 60)
    return figure


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
    return _layout(
        figure,
        f"(n,p)-extraction · {scheme}",
        xaxis={"title": "queries n", "type": "log"},
        yaxis=_percent_axis("records extracted"),
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
