"""The reasoning family's charts: LiMem by puzzle size and perturbation, retention across
versions, and WILT's rule grid, accuracies and tests used. Pure: summary in, Figure out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from worker.checks.report_kit import layout

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
    return layout(
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
    return layout(
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
    return layout(
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
    return layout(
        figure,
        "Factoid accuracy along the chain",
        yaxis={"title": "accuracy", "tickformat": ".0%", "range": [0, 1]},
    )


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
    figure = layout(
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
    return layout(
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
    return layout(
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
    return layout(
        figure,
        "Grid agreement of wrong guesses",
        xaxis={"title": "rule", "type": "category"},
        yaxis={"title": "agreement", "tickformat": ".0%", "range": [0, 1]},
    )
