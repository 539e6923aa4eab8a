"""Capacity and theory checks (METRICS.md §8): what an architecture can memorize at best, and
what a dataset demands of any memorizer.

>>> round(attention_capacity(n_tokens=50, d=10, d_head=10, heads=1, associations=2500).phi, 5)
0.02784
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

WIDTH_FLAG_TEXT = (
    "Yu et al. (2024) show that for some distributions a generalizable memorization network "
    "needs width ≥ n; this architecture has no worst-case guarantee as a memorizer."
)


@dataclass(frozen=True)
class AttentionCapacity:
    capacity: int  # C = H·d_h + d
    previous_capacity: int  # H(d_h − 1) + 1 (Mahdavi et al.), valid only when S ≤ d
    previous_applies: bool
    phi: float  # Corollary 2: 1/N + (1 − 1/N)·min(1, C/T₀)
    previous_phi: float
    construction_params: int  # Theorem 1: d(S + 2N + 4·d_h·H)
    associations: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def accuracy_bound(n_tokens: int, capacity: int, associations: int) -> float:
    """What an optimal single attention layer reaches at least: 1/N + (1−1/N)·min(1, C/T₀)."""
    return 1 / n_tokens + (1 - 1 / n_tokens) * min(1.0, capacity / associations)


def attention_capacity(
    *, n_tokens: int, d: int, d_head: int, heads: int, associations: int, context: int = 2
) -> AttentionCapacity:
    """Dana, Pydi & Chevaleyre (AISTATS 2025) for one multi-head attention layer."""
    if min(n_tokens, d, d_head, heads, associations, context) < 1:
        raise ValueError("every capacity input must be a positive integer")
    capacity = heads * d_head + d
    previous = heads * (d_head - 1) + 1
    return AttentionCapacity(
        capacity=capacity,
        previous_capacity=previous,
        previous_applies=context <= d,
        phi=accuracy_bound(n_tokens, capacity, associations),
        previous_phi=accuracy_bound(n_tokens, previous, associations),
        construction_params=d * (context + 2 * n_tokens + 4 * d_head * heads),
        associations=associations,
    )


def width_flag(hidden_widths: Sequence[int], input_dim: int) -> dict[str, Any]:
    """The worst-case width statement of Yu et al.: raised when a hidden layer is narrower than
    the input."""
    narrowest = min(hidden_widths) if hidden_widths else None
    raised = narrowest is not None and narrowest < input_dim
    return {
        "min_hidden_width": narrowest,
        "input_dim": input_dim,
        "width_flag": raised,
        "text": WIDTH_FLAG_TEXT if raised else None,
    }


def nearest_cross_class(
    x: np.ndarray, y: np.ndarray, queries: np.ndarray, query_labels: np.ndarray, block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the distance to its nearest point of another class and that point's index.

    Exact, in blocks of queries so memory stays at block × n distances.
    """
    points = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    labels = np.asarray(y)
    q = np.asarray(queries, dtype=np.float64).reshape(len(queries), -1)
    distances = np.full(len(q), np.inf)
    nearest = np.full(len(q), -1, dtype=np.int64)
    squared = (points**2).sum(axis=1)
    for start in range(0, len(q), block):
        part = q[start : start + block]
        d2 = (part**2).sum(axis=1)[:, None] + squared[None, :] - 2 * part @ points.T
        d2 = np.maximum(d2, 0.0)
        d2[np.asarray(query_labels)[start : start + block, None] == labels[None, :]] = np.inf
        index = d2.argmin(axis=1)
        value = d2[np.arange(len(part)), index]
        # Recompute the winner exactly: the expansion above loses digits for close points.
        exact = np.sqrt(((part - points[index]) ** 2).sum(axis=1))
        distances[start : start + block] = np.where(np.isfinite(value), exact, np.inf)
        nearest[start : start + block] = np.where(np.isfinite(value), index, -1)
    return distances, nearest


def separation_bound(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """c(D) = min over differently labelled pairs of ‖x_i − x_j‖₂, with contradictory pairs
    (c = 0: identical inputs, different labels, which no function can memorize) listed."""
    distances, nearest = nearest_cross_class(x, y, x, y)
    finite = distances[np.isfinite(distances)]
    pairs = sorted(
        {tuple(sorted((int(i), int(j)))) for i, j in enumerate(nearest) if distances[i] == 0}
    )
    return {
        "separation_bound": float(finite.min()) if len(finite) else None,
        "contradictory_pairs": [list(pair) for pair in pairs],
        "nearest_cross_class": distances,
    }
