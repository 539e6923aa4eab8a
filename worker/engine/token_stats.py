"""Per-sample token statistics: plain arrays, so checks can use them without torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TokenStats:
    """Per-sample statistics of the true tokens under the model."""

    n_tokens: int
    logprobs: np.ndarray  # (n_tokens - 1,) float64: ℓ_t = z_t[x_t] - logsumexp(z_t)
    truncated: bool

    @property
    def n_scored(self) -> int:
        return int(self.logprobs.shape[0])

    @property
    def sum_logprob(self) -> float:
        return float(self.logprobs.sum())

    @property
    def mean_logprob(self) -> float | None:
        return self.sum_logprob / self.n_scored if self.n_scored else None
