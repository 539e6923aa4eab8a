"""The charts of `kk_memorization` and `retention`: pure functions from the stored summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from app.dashboard.figures import _layout

PERTURBATION_COLORS = {
    "perturbed_statement": "#c2410c",
    "perturbed_leaf": "#ea580c",
    "random_pair": "#0f766e",
    "flip_role": "#0d9488",
    "uncommon_name": "#2563eb",
    "reorder_statement": "#7c3aed",
}
SPLIT_DASH = {"train": "solid", "test": "dash"}


def limem_by_people_figure(kk: Mapping[str, Any]) -> go.Figure | None:
    """LiMem against the number of people, one line per perturbation and split."""
    by_people = kk.get("by_people") or {}
    if not by_people:
        return None
    people = sorted(by_people, key=int)
    splits = sorted({split for groups in by_people.values() for split in groups})
    traces = []
    for name in kk.get("by_perturbation") or {}:
        for split in splits:
            y = [
                ((by_people[n].get(split) or {}).get("by_perturbation") or {})
                .get(name, {})
                .get("limem")
                for n in people
            ]
            traces.append(
                go.Scatter(
                    x=[int(n) for n in people],
                    y=y,
                    mode="lines+markers",
                    name=f"{name} · {split}",
                    line={
                        "color": PERTURBATION_COLORS.get(name, "#334e68"),
                        "dash": SPLIT_DASH.get(split, "dot"),
                    },
                )
            )
    return _layout(
        go.Figure(traces),
        "LiMem by number of people",
        xaxis={"title": "people", "dtick": 1},
        yaxis={"title": "LiMem", "range": [0, 1]},
    )


def limem_by_perturbation_figure(kk: Mapping[str, Any]) -> go.Figure | None:
    table = kk.get("by_perturbation") or {}
    if not table:
        return None
    names = list(table)
    figure = go.Figure(
        [
            go.Bar(
                x=names,
                y=[table[n]["limem"] for n in names],
                name="LiMem",
                marker={"color": [PERTURBATION_COLORS.get(n, "#334e68") for n in names]},
            ),
            go.Scatter(
                x=names,
                y=[table[n]["consistency"] for n in names],
                name="consistency",
                mode="markers",
                marker={"color": "#111827", "size": 9, "symbol": "diamond"},
            ),
        ]
    )
    return _layout(
        figure, "LiMem and consistency by perturbation", yaxis={"title": "share", "range": [0, 1]}
    )


def retention_heatmap_figure(retention: Mapping[str, Any]) -> go.Figure | None:
    """Retention of what each version knew, in every later (and earlier) version."""
    matrix = retention.get("matrix")
    versions = [v["label"] for v in retention.get("versions") or []]
    if not matrix or len(versions) < 2:
        return None
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=versions,
            y=versions,
            zmin=0,
            zmax=1,
            colorscale="Teal",
            hovertemplate="from %{y} to %{x}: %{z:.1%}<extra></extra>",
            colorbar={"title": "retention"},
        )
    )
    return _layout(
        figure,
        "Retention across versions",
        xaxis={"title": "evaluated version"},
        yaxis={"title": "reference version"},
    )


def retention_accuracy_figure(retention: Mapping[str, Any]) -> go.Figure | None:
    accuracy = retention.get("accuracy") or {}
    if not accuracy:
        return None
    labels = list(accuracy)
    figure = go.Figure(
        go.Scatter(
            x=labels,
            y=[accuracy[v] for v in labels],
            mode="lines+markers",
            line={"color": "#0f766e"},
            name="exact match",
        )
    )
    return _layout(
        figure,
        "Factoid accuracy along the chain",
        yaxis={"title": "accuracy", "tickformat": ".0%", "range": [0, 1]},
    )
