"""Extraction across a whole work (Cooper et al. 2025): the windows' reductions, in numpy.

A long document is one record. Windows of prefix n and suffix m start every `stride` tokens;
window w is extractable at threshold p when its exact p_z >= p (METRICS §2: the suffix
conditioned on its own prefix only). A window covers its suffix tokens, the text it emits;
the work's coverage is the share of its tokens some extractable window covers, and its longest
extractable run the longest stretch of covered tokens. The scan itself (model work) is
`coverage_scan.py`; everything here reads the per-window series it keeps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

LOG10_E = math.log10(math.e)


def coverage_offsets(
    n_tokens: int, prefix: int, suffix: int, stride: int, offset: int = 0
) -> range:
    """Every window start whose prefix and suffix fit in the text: no cap on their number."""
    last = n_tokens - prefix - suffix
    return range(offset, last + 1, stride) if last >= offset else range(0)


def log10_pz_rows(scheme_logprobs: np.ndarray) -> np.ndarray:
    """log10 p_z per window from the suffix's per-token log p̃ (W, m), in float64: -inf where
    the scheme filters a suffix token out (p_z = 0)."""
    rows = np.asarray(scheme_logprobs, dtype=np.float64)
    if np.isnan(rows).any():
        raise ValueError("a scheme was not computed over every suffix token")
    filtered = np.isneginf(rows).any(axis=1)
    total = np.where(np.isneginf(rows), 0.0, rows).sum(axis=1) * LOG10_E
    return np.where(filtered, -math.inf, total)


def fragile_rows(argmax_match: np.ndarray, near: np.ndarray) -> np.ndarray:
    """extraction.window_fragile over a batch of windows (W, m): an extracted window is fragile
    when any suffix margin is within its rounding bound, another when all its mismatches are."""
    extracted = argmax_match.all(axis=1)
    return np.where(extracted, near.any(axis=1), (near | argmax_match).all(axis=1))


@dataclass
class WindowSeries:
    """The per-window series of a scan, appended chunk by chunk (the only per-window state)."""

    schemes: Sequence[str]
    rechecked: int = 0  # windows whose values a float32 re-check replaced
    _offsets: list[np.ndarray] = field(default_factory=list)
    _greedy: list[np.ndarray] = field(default_factory=list)
    _fragile: list[np.ndarray] = field(default_factory=list)
    _log10: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(
        self,
        offsets: np.ndarray,
        greedy: np.ndarray,
        fragile: np.ndarray,
        log10_pz: dict[str, np.ndarray],
    ) -> None:
        self._offsets.append(np.asarray(offsets, dtype=np.int64))
        self._greedy.append(np.asarray(greedy, dtype=bool))
        self._fragile.append(np.asarray(fragile, dtype=bool))
        for name in self.schemes:
            self._log10.setdefault(name, []).append(np.asarray(log10_pz[name], dtype=np.float64))

    def _joined(self, parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    @property
    def offsets(self) -> np.ndarray:
        return self._joined(self._offsets, np.int64)

    @property
    def greedy(self) -> np.ndarray:
        return self._joined(self._greedy, bool)

    @property
    def fragile(self) -> np.ndarray:
        return self._joined(self._fragile, bool)

    def log10_pz(self, name: str) -> np.ndarray:
        return self._joined(self._log10.get(name, []), np.float64)


def extractable(log10_pz: np.ndarray, threshold: float) -> np.ndarray:
    """Windows whose p_z >= threshold (p_z = 0, -inf here, never is)."""
    return np.asarray(log10_pz) >= math.log10(threshold)


def covered_tokens(
    offsets: np.ndarray, chosen: np.ndarray, n_tokens: int, prefix: int, suffix: int
) -> np.ndarray:
    """Which of the work's tokens lie in the suffix of some chosen window, as a bool mask."""
    starts = np.asarray(offsets)[np.asarray(chosen, dtype=bool)] + prefix
    depth = np.zeros(n_tokens + 1, dtype=np.int64)
    np.add.at(depth, starts, 1)
    np.add.at(depth, np.minimum(starts + suffix, n_tokens), -1)
    return np.cumsum(depth[:n_tokens]) > 0


def spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """The maximal runs [start, end) of True in a mask."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest run of covered tokens; (0, 0) when none is."""
    runs = spans(mask)
    if not runs:
        return 0, 0
    start, end = max(runs, key=lambda run: (run[1] - run[0], -run[0]))
    return start, end - start


def top_windows(
    offsets: np.ndarray, log10_pz: np.ndarray, k: int, prefix: int, suffix: int
) -> list[tuple[int, float]]:
    """The k likeliest windows whose windows (prefix and suffix) do not overlap one another:
    with a short stride, neighbours of the best window would otherwise fill the list."""
    offsets, log10_pz = np.asarray(offsets), np.asarray(log10_pz)
    order = np.argsort(-log10_pz, kind="stable")
    order = order[np.isfinite(log10_pz[order])]
    span = prefix + suffix
    chosen: list[tuple[int, float]] = []
    for index in order:
        if len(chosen) == k:
            break
        start = int(offsets[index])
        if all(abs(start - other) >= span for other, _ in chosen):
            chosen.append((start, float(log10_pz[index])))
    return chosen


def screen_window_log10(
    token_logprobs: np.ndarray, offsets: np.ndarray, prefix: int, suffix: int
) -> np.ndarray:
    """Screening log10 p_z per window from per-token log p̃ over the whole text (index t: token
    t given everything before it), by prefix sums: not the exact definition, which conditions
    the suffix on its own prefix only."""
    values = np.asarray(token_logprobs, dtype=np.float64)
    zeros = np.concatenate([[0], np.cumsum(np.isneginf(values))])
    sums = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(values), values, 0.0))])
    starts = np.asarray(offsets, dtype=np.int64) + prefix
    ends = starts + suffix
    total = (sums[ends] - sums[starts]) * LOG10_E
    return np.where(zeros[ends] > zeros[starts], -math.inf, total)


def recall(found: np.ndarray, truth: np.ndarray) -> float | None:
    """Share of the truly extractable windows the screen kept; None when none is."""
    truth = np.asarray(truth, dtype=bool)
    if not truth.any():
        return None
    return float((np.asarray(found, dtype=bool) & truth).sum() / truth.sum())


def bucket_size(n_windows: int, points: int) -> int:
    """Windows per stored point so that at most `points` points hold `n_windows` (1: all)."""
    return max(1, math.ceil(n_windows / points))


def bucket_max(values: np.ndarray, size: int) -> np.ndarray:
    """Each run of `size` consecutive windows' largest value (the last run may be shorter): a
    downsampled series that still shows every peak, so no extractable window hides in it."""
    values = np.asarray(values)
    if size == 1 or not len(values):
        return values
    return np.maximum.reduceat(values, np.arange(0, len(values), size))
