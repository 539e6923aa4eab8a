"""The `lid` summary over stored rows: a FLIPD that was not finite is stored as null
(core/db.py), and summarizes as the NaN it was."""

from __future__ import annotations

import json
import math
from typing import Any

from core.db import json_text
from worker.checks.diffusion.kinds import LidParams
from worker.checks.diffusion.lid import summarize

PARAMS = LidParams(training_images="t.npz", t0=10, t0_grid=[10, 50])


def _row(i: int, flipd: float | None) -> dict[str, Any]:
    return {
        "id": f"r{i}",
        "memorized": i % 2 == 0,
        "source": "training",
        "flipd": flipd,
        "flipd_curve": {"10": flipd, "50": 3.0 + i},
        "lpca": 4.0,
        "reading": "not_memorized",
    }


def test_a_flipd_stored_as_null_summarizes_as_nan() -> None:
    rows = [_row(i, 1.0 + i) for i in range(4)]
    summary = summarize([*rows, _row(4, None)], PARAMS)
    with_nan = summarize([*rows, _row(4, math.nan)], PARAMS)
    assert json.loads(json_text(summary)) == json.loads(json_text(with_nan))
    assert summary["by_group"]["memorized"]["flipd"] == [1.0, 3.0, None]
    assert summary["by_group"]["not_memorized"]["mean_flipd"] == 3.0
