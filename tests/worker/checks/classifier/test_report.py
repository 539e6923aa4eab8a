"""The classifier checks' charts and sections from summaries built by the real summarizers."""

from __future__ import annotations

import json

import numpy as np

from worker.checks.classifier import figures
from worker.checks.classifier.diversity import _encode
from worker.checks.classifier.diversity import summarize as summarize_diversity
from worker.checks.classifier.kinds import DiversityParams
from worker.checks.classifier.report import REPORT
from worker.checks.unlearning.compute import summarize as summarize_unlearning
from worker.checks.unlearning.kinds import UnlearningParams
from worker.checks.unlearning.report import REPORT as UNLEARNING_REPORT
from worker.checks.unlearning.report import unlearning_levels_figure


def _diversity_summary() -> dict:
    rng = np.random.default_rng(0)
    rows = [
        {
            "id": str(i),
            "pooling": "cls",
            "detail": {
                "activations": {"a": _encode(rng.normal(size=6)), "b": _encode(rng.normal(size=4))}
            },
        }
        for i in range(200)
    ]
    return summarize_diversity(rows, DiversityParams(n_bins=10))


def test_entropy_boxes_are_notched_and_mi_density_integrates_to_one() -> None:
    summary = _diversity_summary()
    boxes = figures.entropy_box_figure(summary)
    assert [trace.type for trace in boxes.data] == ["box", "box"]
    assert all(trace.notched for trace in boxes.data)
    assert len(boxes.data[0].y) == 6 and len(boxes.data[1].y) == 4
    density = figures.mi_density_figure(summary)
    assert [trace.name for trace in density.data] == ["a", "b"]
    x, y = np.asarray(density.data[0].x), np.asarray(density.data[0].y)
    assert y.min() >= 0 and 0.5 < float(np.sum(np.diff(x) * y[:-1])) <= 1.05


def test_an_empty_summary_draws_nothing() -> None:
    assert figures.entropy_box_figure({}) is None
    assert figures.mi_density_figure({"layers": {}}) is None
    assert figures.exemplar_figure({"most_memorized": []}) is None
    assert unlearning_levels_figure({}) is None


def test_exemplars_are_heatmaps_titled_with_label_and_prediction() -> None:
    summary = {
        "most_memorized": [{"id": "r1", "label": 3, "predicted": 5, "score": 2.0}],
        "exemplars": {"r1": {"image": [[0.0, 1.0], [0.5, 0.25]]}},
    }
    figure = figures.exemplar_figure(summary)
    assert figure.data[0].type == "heatmap"
    assert [list(row) for row in figure.data[0].z] == [[0.0, 1.0], [0.5, 0.25]]
    assert "label 3 → 5" in figure.layout.annotations[0].text


def test_unlearning_scorecard_section() -> None:
    rows = []
    for i, split in enumerate(["forget"] * 9 + ["retain"] * 6 + ["test"] * 6):
        rows.append(
            {
                "id": str(i),
                "split": split,
                "correct": {"unlearned": i % 2 == 0, "retrained": i % 3 == 0},
                "confidence": {"unlearned": 0.5 + i / 50, "retrained": 0.4 + i / 60},
                "mia_features": {
                    "unlearned": [0.5 + i / 50, 0.3, 0.2],
                    "retrained": [0.4, 0.2, i / 30],
                },
                "stratify_score": -i / 20,
                "stratify_basis": "unlearned",
            }
        )
    summary = summarize_unlearning(rows, UnlearningParams(rum_n_per_level=3))
    section = UNLEARNING_REPORT.sections["unlearning"](summary)
    assert [chart.id for chart in section.charts] == ["unlearning-accuracy", "unlearning-levels"]
    accuracy = json.loads(section.charts[0].figure_json)
    assert [trace["name"] for trace in accuracy["data"]] == ["unlearned", "retrained"]
    card = dict((row[0], row[1]) for row in section.tables[0].rows)
    assert card["Tug-of-War"] == f"{summary['tug_of_war']:.4g}"
    assert "low → mid → high" in " ".join(section.notes)


def test_every_classifier_section_survives_a_bare_summary() -> None:
    for build in [*REPORT.sections.values(), *UNLEARNING_REPORT.sections.values()]:
        section = build({})
        assert section.charts == [] or all(chart.figure_json for chart in section.charts)
