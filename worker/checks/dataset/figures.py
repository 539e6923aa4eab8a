"""The dataset family's figures: pure functions from a stored summary to Plotly figures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from worker.checks.report_kit import ALL_COLOR, layout


def duplicate_histogram_figure(duplication: Mapping[str, Any]) -> go.Figure | None:
    """Records by how many copies of their text the corpus holds (1: unique). The y axis is
    logarithmic: a few heavily repeated texts sit beside a mass of unique ones."""
    histogram = duplication.get("histogram") or {}
    if not histogram.get("copies"):
        return None
    figure = go.Figure(
        go.Bar(
            x=[str(c) for c in histogram["copies"]],
            y=histogram["records"],
            marker={"color": ALL_COLOR, "line": {"width": 0}},
            hovertemplate="%{y:,} records with %{x} copies<extra></extra>",
        )
    )
    return layout(
        figure,
        "Records by copies of their text in the corpus",
        xaxis={"title": "copies in the corpus (normalised text)", "type": "category"},
        yaxis={"title": "records", "type": "log"},
    )
