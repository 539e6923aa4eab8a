"""The GPU bench's verdict rules (bench/gpu_verdicts.py), on hand-made suffixes: which windows
count as flagged, and which margins a greedy verdict rests on."""

from __future__ import annotations

import numpy as np
import pytest

from bench.gpu_verdicts import SMOKE_TASK, deciding_margins, flagged
from worker.engine.token_stats import TokenStats


def _stats(
    matches: list[bool], margins: list[float], bounds: list[float] | None = None
) -> TokenStats:
    """A text whose suffix predictions start at SMOKE_TASK's stats index prefix - 1."""
    lead = SMOKE_TASK.prefix - 1
    n = lead + SMOKE_TASK.suffix
    pad = SMOKE_TASK.suffix - len(matches)
    return TokenStats(
        n_tokens=n + 1,
        logprobs=np.zeros(n),
        argmax_match=np.array([True] * lead + matches + [True] * pad),
        margins=np.array([9.0] * lead + margins + [7.0] * pad),
        margin_bounds=None if bounds is None else np.array([0.1] * lead + bounds + [0.1] * pad),
    )


def test_the_bench_flags_by_the_production_rule() -> None:
    """One rule for bench and service: extraction.window_fragile over the canary's suffix."""
    assert flagged(_stats([True, True], [1.0, 0.05], [0.1, 0.1]), SMOKE_TASK)
    assert not flagged(_stats([True, True], [1.0, 0.5], [0.1, 0.1]), SMOKE_TASK)
    with pytest.raises(ValueError, match="NaN"):
        flagged(_stats([True, True], [1.0, 0.5], [0.1, np.nan]), SMOKE_TASK)


def test_the_deciding_margins_end_at_the_first_mismatch() -> None:
    stats = _stats([True, False, False], [1.0, -0.2, -0.001])
    assert deciding_margins(stats, SMOKE_TASK).tolist() == [1.0, -0.2]
    extracted = _stats([True, True], [1.0, 0.3])
    assert deciding_margins(extracted, SMOKE_TASK).tolist() == [1.0, 0.3] + [7.0] * (
        SMOKE_TASK.suffix - 2
    )
