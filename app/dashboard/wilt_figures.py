"""The charts of `wilt`: pure functions from the stored summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from app.dashboard.figures import _layout

# solved, wrong guess, invalid guess, aborted or out of turns
STATUS_COLORS = ["#b91c1c", "#f59e0b", "#fcd34d", "#0f766e"]
STATUS_NAMES = ("no guess", "invalid guess", "wrong guess", "solved")


def rule_status(rule: Mapping[str, Any]) -> int:
    """0 no guess (aborted, out of turns), 1 invalid, 2 wrong, 3 solved: the grid's colour."""
    if rule.get("correct"):
        return 3
    if rule.get("outcome") != "guessed":
        return 0
    return 2 if rule.get("valid") else 1


def rule_grid_figure(wilt: Mapping[str, Any]) -> go.Figure | None:
    """Rule × model: one cell per rule, coloured by what the model's guess was."""
    rules = wilt.get("per_rule") or []
    if not rules:
        return None
    scale = []
    for i, color in enumerate(STATUS_COLORS):
        scale += [[i / 4, color], [(i + 1) / 4, color]]
    hover = [
        f"rule {r['rule_id']} ({r['family']})<br>{STATUS_NAMES[rule_status(r)]}"
        f"<br>tests {r['tests_used']} · points {r['points']}"
        for r in rules
    ]
    figure = go.Figure(
        go.Heatmap(
            z=[[rule_status(r) for r in rules]],
            x=[str(r["rule_id"]) for r in rules],
            y=["this model"],
            zmin=-0.5,
            zmax=3.5,
            colorscale=scale,
            text=[hover],
            hovertemplate="%{text}<extra></extra>",
            xgap=2,
            colorbar={
                "tickvals": [0, 1, 2, 3],
                "ticktext": list(STATUS_NAMES),
                "title": "",
            },
        )
    )
    figure = _layout(
        figure, "Every rule: what the final guess was", xaxis={"title": "rule", "type": "category"}
    )
    figure.update_layout(height=220)
    return figure


def accuracy_by_family_figure(wilt: Mapping[str, Any]) -> go.Figure | None:
    families = wilt.get("by_family") or {}
    if not families:
        return None
    names = list(families)
    figure = go.Figure(
        go.Bar(
            x=names,
            y=[families[n]["accuracy"] for n in names],
            text=[f"{families[n]['correct']}/{families[n]['n']}" for n in names],
            marker={"color": "#0f766e"},
            name="solved",
        )
    )
    return _layout(
        figure,
        "Accuracy by rule family",
        yaxis={"title": "solved", "tickformat": ".0%", "range": [0, 1]},
    )


def tests_used_figure(wilt: Mapping[str, Any]) -> go.Figure | None:
    rules = wilt.get("per_rule") or []
    if not rules:
        return None
    traces = [
        go.Histogram(
            x=[r["tests_used"] for r in rules if bool(r["correct"]) == solved],
            name="solved" if solved else "not solved",
            marker={"color": "#0f766e" if solved else "#b91c1c"},
            xbins={"start": -0.5, "end": (wilt.get("max_tests") or 30) + 0.5, "size": 1},
        )
        for solved in (True, False)
    ]
    figure = go.Figure(traces)
    figure.update_layout(barmode="stack")
    return _layout(
        figure, "Tests used before the guess", xaxis={"title": "tests"}, yaxis={"title": "rules"}
    )


def wrong_agreement_figure(wilt: Mapping[str, Any]) -> go.Figure | None:
    """How close the wrong guesses came: their agreement with the rule on the 41³ grid."""
    wrong = [r for r in wilt.get("per_rule") or [] if r["valid"] and not r["correct"]]
    if not wrong:
        return None
    figure = go.Figure(
        go.Bar(
            x=[str(r["rule_id"]) for r in wrong],
            y=[r["grid_agreement"] for r in wrong],
            marker={"color": "#f59e0b"},
            name="grid agreement",
        )
    )
    return _layout(
        figure,
        "Grid agreement of wrong guesses",
        xaxis={"title": "rule", "type": "category"},
        yaxis={"title": "agreement", "tickformat": ".0%", "range": [0, 1]},
    )
