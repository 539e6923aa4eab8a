"""Across a model's versions: its headline figures as one panel each, with 95% intervals. The
families' own charts are their report parts (`worker/checks/<family>/report.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from worker.checks.report_kit import P_COLORS, layout


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
    layout(figure, "Across versions")
    figure.update_layout(height=220 * len(series) + 60)
    return figure
