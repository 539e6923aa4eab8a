"""The classifier family's charts: entropy and MI by layer, proxy histograms and exemplars,
separation distances. Pure: summary in, Figure out."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from worker.checks.report_kit import histogram_figure, image_grid_figure, layout

LAYER_COLORS = ("#2563eb", "#7c3aed", "#db2777", "#059669", "#d97706", "#475569", "#0891b2")


def _layer_color(index: int) -> str:
    return LAYER_COLORS[index % len(LAYER_COLORS)]


def entropy_box_figure(diversity: Mapping[str, Any]) -> go.Figure | None:
    """Neuron entropy per layer, notched at a 95% interval around the median."""
    layers = diversity.get("layers") or {}
    if not layers:
        return None
    figure = go.Figure(
        [
            go.Box(
                y=layer["entropy"]["values"],
                name=name,
                notched=True,
                boxpoints=False,
                marker={"color": _layer_color(i)},
                showlegend=False,
            )
            for i, (name, layer) in enumerate(layers.items())
        ]
    )
    bins = diversity.get("settings", {}).get("n_bins")
    note = f"ln {bins} = {math.log(bins):.3f} nats is the most a neuron can hold" if bins else ""
    if note:
        figure.add_annotation(
            text=note, xref="paper", yref="paper", x=1, y=1.02, showarrow=False, xanchor="right"
        )
    return layout(
        figure, "Neuron entropy by layer", xaxis={"title": "layer"}, yaxis={"title": "nats"}
    )


def _density(layer: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    mi = layer.get("mi") or {}
    if "min" not in mi:
        return None
    low, high = mi["min"], mi["max"]
    if high <= low:
        high = low + 1e-6
    x = np.linspace(low, high, 200)
    mixture = mi.get("mixture")
    if mixture:
        y = np.zeros_like(x)
        for weight, mean, std in zip(
            mixture["weights"], mixture["means"], mixture["stds"], strict=True
        ):
            std = max(std, 1e-9)
            y += weight * np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
        return x.tolist(), y.tolist()
    histogram = mi.get("histogram") or {}
    edges, counts = histogram.get("edges") or [], (histogram.get("counts") or {}).get("all")
    if not edges or not counts:
        return None
    widths = np.diff(edges)
    total = max(sum(counts), 1)
    centres = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
    return centres.tolist(), (np.asarray(counts) / (total * widths)).tolist()


def mi_density_figure(diversity: Mapping[str, Any]) -> go.Figure | None:
    """Density of pairwise MI per layer: the Gaussian mixture fitted to all pairs."""
    layers = diversity.get("layers") or {}
    traces = []
    for i, (name, layer) in enumerate(layers.items()):
        curve = _density(layer)
        if curve is not None:
            traces.append(
                go.Scatter(
                    x=curve[0],
                    y=curve[1],
                    mode="lines",
                    name=name,
                    line={"color": _layer_color(i), "width": 2},
                )
            )
    if not traces:
        return None
    return layout(
        go.Figure(traces),
        "Mutual information between neurons",
        xaxis={"title": "MI (nats)"},
        yaxis={"title": "density"},
    )


def proxy_histogram_figure(proxies: Mapping[str, Any], name: str) -> go.Figure | None:
    entry = (proxies.get("proxies") or {}).get(name)
    if not entry:
        return None
    direction = (
        "higher = more memorized"
        if entry["higher_is_more_memorized"]
        else ("lower = more memorized")
    )
    return histogram_figure(entry["histogram"], f"{name}", name, direction)


def exemplar_figure(proxies: Mapping[str, Any], columns: int = 5) -> go.Figure | None:
    """The most memorized records drawn as images, with their label and prediction."""
    images = proxies.get("exemplars") or {}
    shown = [e for e in proxies.get("most_memorized", []) if e["id"] in images]
    if not shown:
        return None
    titles = [f"{e['id']}<br>label {e['label']} → {e['predicted']}" for e in shown]
    return image_grid_figure(
        [images[e["id"]]["image"] for e in shown], titles, columns, "Most memorized records"
    )


def capacity_figure(capacity: Mapping[str, Any]) -> go.Figure | None:
    histogram = capacity.get("nearest_cross_class_histogram")
    if not histogram:
        return None
    return histogram_figure(
        histogram,
        "Distance to the nearest record of another class",
        "L2 distance",
        f"c(D) = {capacity['separation_bound']:.4g}",
    )
