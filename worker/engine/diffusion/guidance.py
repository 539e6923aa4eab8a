"""Classifier-free guidance and the attraction basin (Jain et al., CVPR 2025; Wen et al. 2024).

The combiner, the per-sample guidance gap Δ_t = ‖ε_c − ε_u‖₂, and the three schedules that
decide the scale at each step: static (STP), dynamic (DTP) and opposite guidance with a dynamic
transition. Pure functions of tensors and lists, so a sampler, a notebook or a test can use them.

>>> dynamic_transition([9, 7, 5, 4, 4.5, 6, 5])
4
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import torch

from worker.engine.diffusion.plans import DEFAULT_SCALE

OPPOSITE_FALLBACK_TP = 5  # the reference's transition when d has no interior minimum


def combine(eps_u: torch.Tensor, eps_c: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """ε̃ = ε_u + s·(ε_c − ε_u): s = 0 is unconditional, 1 conditional, s < 0 opposite guidance.
    A tensor `scale` of shape (B,) guides each sample of the batch at its own scale."""
    if isinstance(scale, torch.Tensor) and scale.dim() == 1:
        scale = scale.reshape(-1, *([1] * (eps_u.dim() - 1))).to(eps_u)
    # (1 − s)·ε_u + s·ε_c: the same affine map, exact at s = 0 and s = 1 in floating point.
    return (1 - scale) * eps_u + scale * eps_c


def guidance_gap(eps_u: torch.Tensor, eps_c: torch.Tensor) -> torch.Tensor:
    """Δ = ‖ε_c − ε_u‖₂ over the whole latent of each sample: shape (B,). The official scripts
    run batch 1, so a batched norm must stay per sample."""
    return (eps_c - eps_u).flatten(1).norm(dim=1)


def detection_score(deltas: Sequence[float], mode: str = "mean") -> float:
    """Wen et al.'s detector: the mean Δ over the steps, or Δ at the first step."""
    if not deltas:
        raise ValueError("no steps")
    if mode == "first":
        return float(deltas[0])
    if mode != "mean":
        raise ValueError("mode must be 'mean' or 'first'")
    return float(np.mean(deltas))


def static_schedule(
    timesteps: Sequence[int], tau: int, s_before: float, s_after: float
) -> list[float]:
    """STP: s_before while t > τ, s_after from t ≤ τ on (t runs from about 999 down to 0)."""
    return [s_before if t > tau else s_after for t in timesteps]


def dynamic_transition(deltas: Sequence[float]) -> int | None:
    """DTP: the first j with Δ_j > Δ_{j−1} and Δ_{j−2} > Δ_{j−1}, one step after the first strict
    local minimum (j ≥ 2); None when Δ never turns upward."""
    for j in range(2, len(deltas)):
        if deltas[j] > deltas[j - 1] and deltas[j - 2] > deltas[j - 1]:
            return j
    return None


def dynamic_schedule(
    n_steps: int, fire: int | None, s_before: float = 1.0, s_after: float = DEFAULT_SCALE
) -> list[float]:
    """s_before (1.0: the plain conditional prediction) before the firing step, s_after from it."""
    start = n_steps if fire is None else fire
    return [s_before if j < start else s_after for j in range(n_steps)]


def latent_turning(latents: Sequence[torch.Tensor]) -> list[float]:
    """d_j = 1 − cos(x_{j+1}, x_j) between consecutive flattened latents of one trajectory."""
    flat = [x.flatten().double() for x in latents]
    return [
        float(1 - torch.nn.functional.cosine_similarity(b, a, dim=0)) for a, b in pairwise(flat)
    ]


def strict_interior_minima(values: Sequence[float]) -> list[int]:
    """Indices i with v[i−1] > v[i] < v[i+1] (what argrelextrema(v, np.less) returns)."""
    return [i for i in range(1, len(values) - 1) if values[i - 1] > values[i] < values[i + 1]]


def opposite_transition(turning: Sequence[float]) -> int:
    """Opposite guidance's switch: the first strict interior minimum of d, the second when the
    first sits at index 1 and a second exists; 5 when there is none."""
    minima = strict_interior_minima(turning)
    if not minima:
        return OPPOSITE_FALLBACK_TP
    if minima[0] == 1 and len(minima) > 1:
        return minima[1]
    return minima[0]


def opposite_schedule(n_steps: int, tp: int, scale: float = DEFAULT_SCALE) -> list[float]:
    """Second pass of opposite guidance: −s before the transition, +s from it on."""
    return [-scale if j < tp else scale for j in range(n_steps)]
