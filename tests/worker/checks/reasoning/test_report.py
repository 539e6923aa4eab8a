"""The K&K and retention charts and sections, from summaries made by the real summarizers."""

from __future__ import annotations

import json

from worker.checks.reasoning.report import REPORT
from worker.checks.registry import REGISTRY


def _kk_summary() -> dict:
    kind = REGISTRY.get_check("kk_memorization")
    params = kind.parse_params({"perturbations": ["perturbed_leaf", "flip_role"]})
    rows = []
    for i in range(12):
        n = 2 + i % 3
        rows.append(
            {
                "id": f"p{i}",
                "n_people": n,
                "split": "train" if i % 2 else "test",
                "correct_orig": i % 4 != 0,
                "wrong_reason": None if i % 4 else "wrong_identity",
                "correct_pert": {"perturbed_leaf": i % 3 == 0, "flip_role": True},
                "memorized_any": i % 4 != 0 and i % 3 != 0,
            }
        )
    return kind.summarize(rows, params)


def test_kk_section_draws_limem_by_people_and_perturbation() -> None:
    summary = _kk_summary()
    section = REPORT.sections["kk_memorization"](summary)
    assert [c.id for c in section.charts] == ["kk-by-people", "kk-by-perturbation"]
    by_people = json.loads(section.charts[0].figure_json)
    # One line per perturbation and split, x = people.
    assert len(by_people["data"]) == 4 and by_people["data"][0]["x"] == [2, 3, 4]
    leaf = summary["by_perturbation"]["perturbed_leaf"]
    bars = json.loads(section.charts[1].figure_json)["data"][0]
    assert bars["y"][0] == leaf["limem"]
    assert section.tables[0].rows[0][0] == "perturbed_leaf"
    assert "wrong_identity 3" in " ".join(section.notes)


def test_retention_section_heatmap_and_forgotten_list() -> None:
    kind = REGISTRY.get_check("retention")
    params = kind.parse_params({"versions": ["path:/m/v1", "path:/m/v2"]})
    rows = [
        {
            "id": "f1",
            "comparison": "exact",
            "correct": {"v0": True, "v1": True, "v2": False},
            "transition": "forgotten",
            "lost_at": "v2",
        },
        {
            "id": "f2",
            "comparison": "exact",
            "correct": {"v0": True, "v1": False, "v2": False},
            "transition": "forgotten",
            "lost_at": "v1",
        },
        {
            "id": "f3",
            "comparison": "exact",
            "correct": {"v0": True, "v1": True, "v2": True},
            "transition": "retained",
            "lost_at": None,
        },
    ]
    summary = kind.summarize(rows, params)
    assert summary["accuracy"] == {"v0": 1.0, "v1": 2 / 3, "v2": 1 / 3}
    assert summary["matrix"][0][2] == 1 / 3 and summary["matrix"][1][2] == 0.5
    section = REPORT.sections["retention"](summary)
    heatmap = json.loads(section.charts[0].figure_json)["data"][0]
    assert heatmap["type"] == "heatmap" and heatmap["x"] == ["v0", "v1", "v2"]
    forgotten = section.tables[1].rows
    assert forgotten == [["f1", "v2"], ["f2", "v1"]]
    assert section.tables[0].rows[2][1] == "(audited model)"


def test_bare_summaries_draw_nothing() -> None:
    for build in REPORT.sections.values():
        assert build({}).charts == []
