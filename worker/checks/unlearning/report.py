"""The unlearning family's report part: the scorecard, and accuracy by split and by
memorization level for the unlearned, original and retrained models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from worker.checks.report_kit import (
    ALL_COLOR,
    CONTROL_UNLEARNING,
    Finding,
    ReportPart,
    Section,
    Table,
    charts,
    count_of,
    counted,
    format_number,
    layout,
)
from worker.engine.distributions import wilson_interval

MODEL_COLORS = {"original": "#94a3b8", "unlearned": "#c2410c", "retrained": "#0f766e"}
LEVEL_NAMES = {"low": "low memorization", "mid": "mid", "high": "high memorization"}


def _grouped(
    categories: list[str], by_model: Mapping[str, Mapping[str, float | None]], title: str
) -> go.Figure:
    figure = go.Figure(
        [
            go.Bar(
                x=categories,
                y=[values.get(c) for c in categories],
                name=model,
                marker={"color": MODEL_COLORS.get(model, ALL_COLOR)},
            )
            for model, values in by_model.items()
        ]
    )
    figure.update_layout(barmode="group")
    return layout(figure, title, yaxis={"title": "accuracy (%)", "range": [0, 100]})


def unlearning_accuracy_figure(unlearning: Mapping[str, Any]) -> go.Figure | None:
    accuracy = unlearning.get("accuracy") or {}
    if not accuracy:
        return None
    return _grouped(["forget", "retain", "test"], accuracy, "Accuracy by split")


def unlearning_levels_figure(unlearning: Mapping[str, Any]) -> go.Figure | None:
    levels = (unlearning.get("stratified") or {}).get("levels") or {}
    if not levels:
        return None
    models = list(next(iter(levels.values()))["accuracy"])
    by_model = {
        model: {LEVEL_NAMES[level]: entry["accuracy"][model] for level, entry in levels.items()}
        for model in models
    }
    return _grouped(
        [LEVEL_NAMES[level] for level in levels],
        by_model,
        "Forget-set accuracy by memorization level",
    )


def unlearning_section(summary: Mapping[str, Any]) -> Section:
    membership = summary.get("membership") or {}
    models = list(summary.get("accuracy") or {})
    rows = [
        ["Tug-of-War", format_number(summary.get("tug_of_war"))],
        ["Tug-of-War (MIA)", format_number(summary.get("tug_of_war_mia"))],
    ]
    for model in models:
        found = membership.get(model) or {}
        rows.append(
            [f"SVC attack: forget called members · {model}", format_number(found.get("svc_mia"))]
        )
        rows.append(
            [f"forget vs test AUROC · {model}", format_number(found.get("forget_vs_test_auc"))]
        )
    notes = []
    if summary.get("tug_of_war_reason"):
        notes.append(f"Tug-of-War not computed: {summary['tug_of_war_reason']}.")
    stratified = summary.get("stratified") or {}
    if stratified.get("levels"):
        notes.append(
            f"Forget set split by {stratified['by']} on the {stratified['basis']} model, "
            f"{stratified['n_per_level']} records per level, unlearned low → mid → high."
        )
    named = [
        ("accuracy", unlearning_accuracy_figure(summary)),
        ("levels", unlearning_levels_figure(summary)),
    ]
    return Section(
        "unlearning",
        "Unlearning scorecard",
        charts("unlearning", named),
        notes,
        [Table("Scorecard", ["", "value"], rows)],
    )


def unlearning_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """The unlearned model's forget-set accuracy against the retrained model's, the gold
    standard: a gap the Wilson interval of the forget set excludes means the data still shows."""
    forget = (summary.get("counts") or {}).get("forget", 0)
    accuracy = summary.get("accuracy") or {}
    unlearned = (accuracy.get("unlearned") or {}).get("forget")
    retrained = (accuracy.get("retrained") or {}).get("forget")
    if unlearned is None or not forget:
        return Finding(
            "unlearning",
            "Unlearning could not be assessed: no forget-set record was scored.",
            "unknown",
            CONTROL_UNLEARNING,
            "Mark the records asked to be forgotten with split 'forget'.",
        )
    kept = count_of(unlearned / 100, forget)
    text = f"The unlearned model still classifies {counted(kept, forget, 'forget-set records')}"
    if retrained is None:
        return Finding(
            "unlearning",
            text + " correctly; without a retrained model there is no reference to judge it by.",
            "unknown",
            CONTROL_UNLEARNING,
            "Provide a model retrained without the forget set (retrained_model) and re-run.",
        )
    text += f" correctly, against {retrained:.1f}% for the model retrained without them"
    if summary.get("tug_of_war") is not None:
        text += f" (Tug-of-War {summary['tug_of_war']:.3f}; 1 = the retrained model's accuracies)"
    low, high = wilson_interval(kept, forget)
    gap = unlearned - retrained
    if low is not None and high is not None and low <= retrained / 100 <= high:
        risk = "low"
    else:
        risk = "high" if gap > 10 else "medium"
    return Finding(
        "unlearning",
        text + ".",
        risk,
        CONTROL_UNLEARNING,
        "Unlearn further (or retrain without the forget set) until the forget-set accuracy "
        "matches the retrained model's."
        if risk != "low"
        else "Keep the retrained reference current; re-run on each unlearning request.",
    )


REPORT = ReportPart(
    sections={"unlearning": unlearning_section}, findings={"unlearning": unlearning_finding}
)
