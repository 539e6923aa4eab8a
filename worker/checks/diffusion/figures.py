"""The diffusion family's charts: guidance-gap curves and exemplar pairs, similarity and
alignment by mitigation, FLIPD histograms and curves. Pure: summary in, Figure out."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from worker.checks.report_kit import image_grid_figure, layout

GROUP_COLORS = {"memorized": "#c2410c", "not_memorized": "#0f766e", "unlabelled": "#334e68"}


METHOD_COLORS = {"cfg": "#c2410c", "stp": "#2563eb", "dtp": "#7c3aed", "og_dtp": "#0f766e"}


def delta_curves_figure(basin: Mapping[str, Any]) -> go.Figure | None:
    """Mean Δ_t per step for memorized and other prompts, DTP's median switch marked."""
    curves = basin.get("delta_curves") or {}
    if not curves:
        return None
    figure = go.Figure()
    for group, curve in curves.items():
        color = GROUP_COLORS.get(group, "#334e68")
        figure.add_trace(
            go.Scatter(
                x=list(range(len(curve))),
                y=curve,
                mode="lines",
                name=group.replace("_", " "),
                line={"color": color},
            )
        )
        step = (basin.get("median_transition") or {}).get(group)
        if step is not None and step < len(curve):
            figure.add_trace(
                go.Scatter(
                    x=[step],
                    y=[curve[int(step)]],
                    mode="markers",
                    name=f"transition · {group.replace('_', ' ')}",
                    marker={"color": color, "size": 11, "symbol": "diamond"},
                )
            )
    return layout(
        figure,
        "Δ_t = ‖ε_c − ε_u‖ along the sampler",
        xaxis={"title": "step"},
        yaxis={"title": "Δ_t"},
    )


def _similarity_rank(similarity: float | None) -> float:
    return -math.inf if similarity is None else similarity


def exemplar_pairs_figure(basin: Mapping[str, Any], columns: int = 3) -> go.Figure | None:
    """The generations closest to training data, each beside its nearest training image."""
    details = basin.get("exemplars") or {}
    shown = [e for e in basin.get("most_similar") or [] if e["id"] in details]
    if not shown:
        return None
    titles, images = [], []
    for entry in shown:
        # A similarity that was not finite is stored as null (core/db.py): it ranks last.
        run = max(details[entry["id"]]["runs"], key=lambda r: _similarity_rank(r["similarity"]))
        similarity = entry["similarity"]
        shown_as = "—" if similarity is None else f"{similarity:.3f}"
        titles += [f"{entry['id']} ({shown_as})", "nearest"]
        images += [run["image"][0], run["nearest_image"][0]]  # the first channel
    return image_grid_figure(
        images, titles, 2 * columns, "Generations next to their nearest training image", 140
    )


def similarity_by_method_figure(mitigation: Mapping[str, Any]) -> go.Figure | None:
    methods = mitigation.get("methods") or {}
    if not methods:
        return None
    figure = go.Figure(
        [
            go.Box(
                y=entry["similarities"],
                name=name,
                boxpoints="all",
                jitter=0.4,
                marker={"color": METHOD_COLORS.get(name, "#334e68"), "size": 4},
            )
            for name, entry in methods.items()
        ]
    )
    threshold = mitigation.get("threshold")
    if threshold is not None:
        figure.add_hline(y=threshold, line_dash="dot", annotation_text="copy threshold")
    return layout(
        figure,
        "Nearest-training similarity by guidance method",
        yaxis={"title": "cosine to nearest training image"},
        showlegend=False,
    )


def alignment_figure(mitigation: Mapping[str, Any]) -> go.Figure | None:
    methods = {
        k: v for k, v in (mitigation.get("methods") or {}).items() if v.get("alignment") is not None
    }
    if not methods:
        return None
    names = list(methods)
    clip = mitigation.get("alignment_measure") == "clip"
    measure = "alignment (CLIP score with the prompt)" if clip else "alignment (class agreement)"
    figure = go.Figure(
        [
            go.Bar(
                x=names,
                y=[methods[n]["copy_rate"] for n in names],
                name="copies",
                marker={"color": "#c2410c"},
            ),
            go.Bar(
                x=names,
                y=[methods[n]["alignment"] for n in names],
                name=measure,
                marker={"color": "#0f766e"},
            ),
        ]
    )
    return layout(
        figure,
        "Copying against alignment, per method",
        # A CLIP score is a cosine and can fall below 0; shares cannot.
        yaxis={"title": "share or CLIP score"} if clip else {"title": "share", "range": [0, 1]},
        barmode="group",
    )


def flipd_histogram_figure(lid: Mapping[str, Any]) -> go.Figure | None:
    groups = lid.get("by_group") or {}
    if not groups:
        return None
    figure = go.Figure(
        [
            go.Histogram(
                x=entry["flipd"],
                name=name.replace("_", " "),
                opacity=0.7,
                marker={"color": GROUP_COLORS.get(name, "#334e68")},
            )
            for name, entry in groups.items()
        ]
    )
    figure.update_layout(barmode="overlay")
    return layout(
        figure,
        f"FLIPD at t₀ = {lid.get('t0')}",
        xaxis={"title": "FLIPD"},
        yaxis={"title": "records"},
    )


def flipd_curve_figure(lid: Mapping[str, Any]) -> go.Figure | None:
    groups = {k: v for k, v in (lid.get("by_group") or {}).items() if v.get("curve")}
    if not groups:
        return None
    figure = go.Figure(
        [
            go.Scatter(
                x=[int(t) for t in entry["curve"]],
                y=list(entry["curve"].values()),
                mode="lines+markers",
                name=name.replace("_", " "),
                line={"color": GROUP_COLORS.get(name, "#334e68")},
            )
            for name, entry in groups.items()
        ]
    )
    return layout(figure, "Mean FLIPD against t₀", xaxis={"title": "t₀"}, yaxis={"title": "FLIPD"})
