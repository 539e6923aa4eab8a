"""The classifier family's sentences from summaries made by the real summarizers."""

from __future__ import annotations

import numpy as np

from worker.checks.classifier.diversity import _encode
from worker.checks.classifier.report import REPORT
from worker.checks.registry import REGISTRY


def _summary(kind_name: str, raw_params: dict, rows: list[dict]) -> tuple[dict, object]:
    kind = REGISTRY.get_check(kind_name)
    params = kind.parse_params(raw_params)
    return kind.summarize(rows, params), params


def test_capacity_says_how_many_records_the_model_fits() -> None:
    rows = [
        {"id": str(i), "correct": i < 95, "nearest_cross_class": 0.5, "nearest_id": "x"}
        for i in range(100)
    ]
    summary, params = _summary("capacity", {}, rows)
    found = REPORT.findings["capacity"](summary, params, {"all": 100})
    assert found.text == "The model fits 95 of 100 records (95.0%, 95% CI 88.8–97.8%)."
    assert found.risk == "low"
    fits_all = [dict(row, correct=True) for row in rows]
    summary, params = _summary("capacity", {}, fits_all)
    found = REPORT.findings["capacity"](summary, params, {})
    assert "100 of 100 records" in found.text and "capacity to memorise" in found.text
    assert found.risk == "medium"


def test_proxies_name_the_ranking_and_grade_no_risk() -> None:
    rows = [
        {
            "id": f"r{i}",
            "label": i % 3,
            "predicted": i % 3,
            "loss": i / 10,
            "mem_score": {"loss": i / 10},
        }
        for i in range(50)
    ]
    summary, params = _summary("proxies", {"proxies": ["loss"], "top_n": 5}, rows)
    found = REPORT.findings["proxies"](summary, params, {})
    assert found.text.startswith("The 5 most memorised of 50 records by loss are listed below")
    assert "top score 4.9" in found.text and found.risk == "unknown"


def test_diversity_reads_per_layer_and_only_beside_another_model() -> None:
    rng = np.random.default_rng(0)
    rows = [
        {
            "id": str(i),
            "pooling": "cls",
            "detail": {"activations": {"a": _encode(rng.normal(size=6))}},
        }
        for i in range(120)
    ]
    summary, params = _summary("diversity", {"n_bins": 10}, rows)
    found = REPORT.findings["diversity"](summary, params, {})
    mean = summary["layers"]["a"]["entropy"]["mean"]
    assert found.text.startswith(
        f"Neuron entropy and inter-neuron MI over 120 records in 1 layers (a: mean entropy "
        f"{mean:.3g} nats"
    ), found.text
    assert found.risk == "unknown" and "same dataset" in found.next_step
