"""The GPU bench's verdict rules (bench/gpu_verdicts.py), on hand-made suffixes: which windows
count as flagged, and which margins a greedy verdict rests on."""

from __future__ import annotations

import numpy as np
import pytest

from bench.gpu_verdicts import SMOKE_TASK, deciding_margins, window_flagged
from worker.engine.token_stats import TokenStats

MATCHES = np.array([True, True, True])


def test_an_extracted_window_is_flagged_when_any_position_is_fragile() -> None:
    bounds = np.full(3, 0.05)
    assert window_flagged(np.array([2.0, 0.05, 1.0]), bounds, MATCHES)  # <= is fragile
    assert not window_flagged(np.array([2.0, 0.06, 1.0]), bounds, MATCHES)


def test_a_missed_window_is_flagged_only_when_every_mismatch_is_fragile() -> None:
    bounds = np.full(3, 0.05)
    matches = np.array([False, True, False])
    # A fragile matching position cannot make a missed window extracted: only mismatches count.
    assert window_flagged(np.array([-0.01, 3.0, -0.04]), bounds, matches)
    assert not window_flagged(np.array([-0.01, 0.0, -0.5]), bounds, matches)


def test_a_bound_missing_inside_the_suffix_is_an_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        window_flagged(np.array([1.0, 1.0, 1.0]), np.array([0.1, np.nan, 0.1]), MATCHES)


def _stats(matches: list[bool], margins: list[float]) -> TokenStats:
    """A text whose suffix predictions start at SMOKE_TASK's stats index prefix - 1."""
    lead = SMOKE_TASK.prefix - 1
    n = lead + SMOKE_TASK.suffix
    pad = SMOKE_TASK.suffix - len(matches)
    return TokenStats(
        n_tokens=n + 1,
        logprobs=np.zeros(n),
        argmax_match=np.array([True] * lead + matches + [True] * pad),
        margins=np.array([9.0] * lead + margins + [7.0] * pad),
    )


def test_the_deciding_margins_end_at_the_first_mismatch() -> None:
    stats = _stats([True, False, False], [1.0, -0.2, -0.001])
    assert deciding_margins(stats, SMOKE_TASK).tolist() == [1.0, -0.2]
    extracted = _stats([True, True], [1.0, 0.3])
    assert deciding_margins(extracted, SMOKE_TASK).tolist() == [1.0, 0.3] + [7.0] * (
        SMOKE_TASK.suffix - 2
    )
