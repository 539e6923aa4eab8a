"""The dataset family's figures: pure functions from a stored summary to Plotly figures. Counts
per category are bars on a category axis (bins are labelled as stored, never re-binned here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from worker.checks.report_kit import ALL_COLOR, MEMBER_COLOR, layout


def _counts_figure(
    labels: Sequence[Any],
    counts: Sequence[int],
    title: str,
    x_title: str,
    y_title: str,
    hover: str,
    log: bool = False,
) -> go.Figure:
    figure = go.Figure(
        go.Bar(
            x=[str(label) for label in labels],
            y=list(counts),
            marker={"color": ALL_COLOR, "line": {"width": 0}},
            hovertemplate=hover + "<extra></extra>",
        )
    )
    y_axis: dict[str, Any] = {"title": y_title, "rangemode": "tozero"}
    if log:
        y_axis = {"title": y_title, "type": "log"}
    return layout(figure, title, xaxis={"title": x_title, "type": "category"}, yaxis=y_axis)


def duplicate_histogram_figure(duplication: Mapping[str, Any]) -> go.Figure | None:
    """Records by how many copies of their text the corpus holds (1: unique). The y axis is
    logarithmic: a few heavily repeated texts sit beside a mass of unique ones."""
    histogram = duplication.get("histogram") or {}
    if not histogram.get("copies"):
        return None
    return _counts_figure(
        histogram["copies"],
        histogram["records"],
        "Records by copies of their text in the corpus",
        "copies in the corpus (normalised text)",
        "records",
        "%{y:,} records with %{x} copies",
        log=True,
    )


def span_bins_figure(duplication: Mapping[str, Any]) -> go.Figure | None:
    """Records by the length of the longest span they share with another record: the long bins
    are the spans a model can regurgitate whole (Carlini et al. 2021 extract 50 tokens)."""
    bins = duplication.get("span_tokens_bins") or {}
    if not bins.get("bins"):
        return None
    return _counts_figure(
        bins["bins"],
        bins["records"],
        "Records by the longest span they share with another record",
        "longest shared span (tokens)",
        "records",
        "%{y:,} records whose longest shared span is %{x} tokens",
    )


def cluster_size_figure(near: Mapping[str, Any]) -> go.Figure | None:
    """Near-duplicate clusters by their number of records (records in no cluster left out)."""
    histogram = (near.get("corpus") or {}).get("cluster_size_histogram") or {}
    if not histogram:
        return None
    sizes = sorted(histogram, key=int)
    return _counts_figure(
        sizes,
        [histogram[size] for size in sizes],
        "Near-duplicate clusters by size",
        "records in the cluster",
        "clusters",
        "%{y:,} clusters of %{x} records",
    )


def pii_by_type_figure(by_type: Mapping[str, Mapping[str, int]]) -> go.Figure | None:
    """Per type: records holding one and occurrences in all; a wide gap between the two bars
    is a value (or values) written many times in few records."""
    if not by_type:
        return None
    types = list(by_type)
    figure = go.Figure(
        [
            go.Bar(
                x=types,
                y=[by_type[t]["records"] for t in types],
                name="records",
                marker={"color": ALL_COLOR, "line": {"width": 0}},
                hovertemplate="%{y:,} records hold a %{x} value<extra></extra>",
            ),
            go.Bar(
                x=types,
                y=[by_type[t]["occurrences"] for t in types],
                name="occurrences",
                marker={"color": MEMBER_COLOR, "line": {"width": 0}},
                hovertemplate="%{y:,} %{x} values found<extra></extra>",
            ),
        ]
    )
    figure.update_layout(barmode="group")
    return layout(
        figure,
        "Personal data and keys by type",
        xaxis={"title": "type", "type": "category"},
        yaxis={"title": "count", "rangemode": "tozero"},
    )


def overlap_histogram_figure(contamination: Mapping[str, Any]) -> go.Figure | None:
    """Evaluation records by the share of their n-grams found in the training corpus."""
    histogram = contamination.get("overlap_histogram") or {}
    if not histogram.get("bins"):
        return None
    n = (contamination.get("corpus") or {}).get("n", "n")
    return _counts_figure(
        histogram["bins"],
        histogram["records"],
        f"Evaluation records by the share of their {n}-grams found in the corpus",
        f"{n}-grams found in the training corpus",
        "evaluation records",
        "%{y:,} records with %{x} of their n-grams in the corpus",
    )
