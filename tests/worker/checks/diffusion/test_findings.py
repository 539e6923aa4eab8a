"""The diffusion family's sentences from summaries made by the real summarizers."""

from __future__ import annotations

from worker.checks.diffusion.report import REPORT
from worker.checks.registry import REGISTRY

IMAGES = {"training_images": "path:/data/train.npz"}


def _summary(kind_name: str, raw_params: dict, rows: list[dict]) -> tuple[dict, object]:
    kind = REGISTRY.get_check(kind_name)
    params = kind.parse_params({**IMAGES, **raw_params})
    return kind.summarize(rows, params), params


def test_basin_counts_prompts_that_copied_a_training_image() -> None:
    rows = [
        {
            "id": str(i),
            "memorized": i < 10,
            "detection_score": 1.0 if i < 10 else 0.1,
            "copies": i < 6,
            "similarity_max": 0.99 if i < 6 else 0.3,
            "delta_curve": [0.1, 0.2],
            "transition": [1],
        }
        for i in range(50)
    ]
    summary, params = _summary("cfg_basin", {}, rows)
    found = REPORT.findings["cfg_basin"](summary, params, {})
    assert found.text.startswith(
        "6 of 50 prompts (12.0%, 95% CI 5.6–23.8%) produced a generation within cosine"
    ), found.text
    assert found.risk == "high" and "GOVERN 6.1" in found.control


def test_mitigation_names_the_method_with_fewest_copies() -> None:
    rows = [
        {
            "memorized": True,
            "similarity": {"cfg": 0.9, "dtp": 0.4},
            "copies": {"cfg": i < 8, "dtp": i < 1},
            "aligned": {"cfg": True, "dtp": i % 10 != 0},
        }
        for i in range(20)
    ]
    summary, params = _summary("cfg_mitigation", {"methods": ["cfg", "dtp"]}, rows)
    found = REPORT.findings["cfg_mitigation"](summary, params, {})
    assert found.text.startswith(
        "With dtp, 1 of 20 prompts (5.0%, 95% CI 0.9–23.6%) still copy a training image, "
        "against 8 with plain guidance (cfg); alignment cost 0.100."
    ), found.text
    assert found.risk == "medium"


def test_lid_counts_records_read_as_memorised() -> None:
    readings = ["od_mem"] * 3 + ["dd_mem"] * 2 + ["none"] * 95
    rows = [
        {"reading": r, "flipd": 3.0, "lpca": 5.0, "flipd_curve": {"10": 3.0}, "memorized": None}
        for r in readings
    ]
    summary, params = _summary("lid", {"t0": 10}, rows)
    found = REPORT.findings["lid"](summary, params, {})
    assert found.text.startswith(
        "5 of 100 records (5.0%, 95% CI 2.2–11.2%) read as memorised by their local intrinsic "
        "dimension (3 overfitting-driven, 2 data-driven"
    ), found.text
    assert found.risk == "high"
