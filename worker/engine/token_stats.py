"""Per-sequence token statistics (METRICS.md §1): plain arrays, usable without torch.

Index j describes position t = j + 1: the prediction of token x_t from x_<t.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TokenStats:
    n_tokens: int
    logprobs: np.ndarray  # (n-1,) float64: ℓ_t = z_t[x_t] - logsumexp(z_t)
    truncated: bool = False
    ranks: np.ndarray | None = None  # (n-1,) int64: 1 + #{v: z_t[v] > z_t[x_t]}
    ties: np.ndarray | None = None  # (n-1,) int64: #{v != x_t: z_t[v] = z_t[x_t]}
    argmax_match: np.ndarray | None = None  # (n-1,) bool: x_t = argmax (lowest id on ties)
    margins: np.ndarray | None = None  # (n-1,) float64: z_t[x_t] - max_{v != x_t} z_t[v]
    # (n-1,) float64: rounding bound tau of the margin (docs/numerics.md), NaN where not
    # computed; a position is fragile iff |margins| <= margin_bounds.
    margin_bounds: np.ndarray | None = None
    entropy: np.ndarray | None = None  # (n-1,) float64: H_t; μ_t = -H_t
    sigma: np.ndarray | None = None  # (n-1,) float64: std of log p under p
    # Per scheme name: log p̃_t(x_t), NaN at positions that were not requested.
    scheme_logprobs: dict[str, np.ndarray] = field(default_factory=dict)
    nucleus_fragile: dict[str, np.ndarray] = field(default_factory=dict)
    # Per top-k scheme: z_t[x_t] minus the k-th largest other logit (>= 0: kept), and its
    # rounding bound; NaN where not computed. Membership is fragile iff |margin| <= bound.
    kth_margins: dict[str, np.ndarray] = field(default_factory=dict)
    kth_margin_bounds: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_scored(self) -> int:
        return int(self.logprobs.shape[0])

    @property
    def sum_logprob(self) -> float:
        return float(self.logprobs.sum())

    @property
    def mean_logprob(self) -> float | None:
        return self.sum_logprob / self.n_scored if self.n_scored else None

    @property
    def margin_fragile(self) -> np.ndarray | None:
        """Positions whose greedy verdict is within rounding error: |margin| <= bound."""
        if self.margins is None or self.margin_bounds is None:
            return None
        return np.abs(self.margins) <= self.margin_bounds  # NaN (not computed) is never fragile

    @property
    def mu(self) -> np.ndarray | None:
        return None if self.entropy is None else -self.entropy
