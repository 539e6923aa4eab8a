"""`cfg_basin` and `cfg_mitigation` summaries over stored rows: a similarity, score or Δ that was
not finite is stored as null (core/db.py), and summarizes as the NaN it was."""

from __future__ import annotations

import json
import math
from typing import Any

from core.db import json_text
from worker.checks.diffusion.basin import summarize_basin, summarize_mitigation
from worker.checks.diffusion.kinds import BasinParams, MitigationParams

BASIN = BasinParams(training_images="t.npz")
MITIGATION = MitigationParams(training_images="t.npz", methods=["cfg", "stp"])


def _stored(summary: dict[str, Any]) -> Any:
    """The summary as its JSON column keeps it."""
    return json.loads(json_text(summary))


def _basin_row(i: int, memorized: bool, undefined: float | None = 1.0) -> dict[str, Any]:
    similarity = 0.5 + i / 100 if undefined == 1.0 else undefined
    return {
        "id": f"r{i}",
        "memorized": memorized,
        "condition": i % 3,
        "detection_score": 2.0 + i if undefined == 1.0 else undefined,
        "similarity_max": similarity,
        "copies": undefined == 1.0 and similarity >= BASIN.threshold(),
        "nearest": i,
        "nearest_label": i % 3,
        "delta_curve": [1.0, 0.5 * i, undefined],
        "transition": [1],
    }


def test_a_basin_row_stored_as_null_summarizes_as_nan() -> None:
    rows = [_basin_row(i, memorized=i % 2 == 0) for i in range(4)]
    with_nan = [*rows, _basin_row(4, memorized=True, undefined=math.nan)]
    with_null = [*rows, _basin_row(4, memorized=True, undefined=None)]
    summary = summarize_basin(with_null, BASIN)
    assert _stored(summary) == _stored(summarize_basin(with_nan, BASIN))
    assert summary["most_similar"][-1] == {"id": "r4", "similarity": None}
    assert summary["by_flag"]["not_memorized"]["similarity"] is not None


def _mitigation_row(i: int, undefined: float | None = 1.0) -> dict[str, Any]:
    cfg = 0.9 - i / 100 if undefined == 1.0 else undefined
    return {
        "memorized": i % 2 == 0,
        "condition": i,
        "similarity": {"cfg": cfg, "stp": 0.5},
        "copies": {"cfg": undefined == 1.0 and cfg >= MITIGATION.threshold(), "stp": False},
        "aligned": {"cfg": 0.8, "stp": 0.7},
    }


def test_a_mitigation_similarity_stored_as_null_summarizes_as_nan() -> None:
    rows = [_mitigation_row(i) for i in range(3)]
    with_nan = [*rows, _mitigation_row(3, undefined=math.nan)]
    with_null = [*rows, _mitigation_row(3, undefined=None)]
    summary = summarize_mitigation(with_null, MITIGATION)
    assert _stored(summary) == _stored(summarize_mitigation(with_nan, MITIGATION))
    assert summary["methods"]["cfg"]["similarities"][-1] is None
    assert summary["methods"]["stp"]["mean_similarity"] == 0.5
