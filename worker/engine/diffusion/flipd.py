"""FLIPD, the local intrinsic dimension a diffusion model assigns to a point (Kamkari et al. 2024;
Ross et al., ICLR 2025): low LID where the model has collapsed onto a copy.

For x_t = ψ(t)·x₀ + σ(t)·ε in ambient dimension D, at y = ψ(t₀)·x (the scaled clean point):
- score form: FLIPD = D + σ²·[tr ∇_y s(y) + ‖s(y)‖²];
- ε form (VP, s = −ε̂/σ): FLIPD = D − σ·tr ∇_y ε̂(y) + ‖ε̂(y)‖².
The trace is exact over basis vectors for small D, else Hutchinson's estimate. Both use
vector-Jacobian products (reverse mode): vᵀJv is the same number either way, and reverse mode
works through every layer (CPU attention kernels have no forward-mode derivative). Unlike the
reference SD code, D is kept and the full guided function is differentiated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import vjp, vmap

Field = Callable[[torch.Tensor], torch.Tensor]  # (B, ...) -> (B, ...): a score or ε̂ at t₀
EXACT_TRACE_MAX_DIM = 3500  # the reference's threshold for the exact trace
BASIS_CHUNK = 256


def exact_trace(field: Field, y: torch.Tensor) -> torch.Tensor:
    """tr ∇_y f(y) per sample, from one VJP per basis vector (batched in chunks)."""
    batch, shape = y.shape[0], y.shape[1:]
    dim = int(torch.tensor(shape).prod()) if shape else 1
    total = torch.zeros(batch, dtype=y.dtype, device=y.device)
    _, pullback = vjp(field, y)

    def directional(v: torch.Tensor) -> torch.Tensor:
        return pullback(v)[0]

    for start in range(0, dim, BASIS_CHUNK):
        idx = torch.arange(start, min(start + BASIS_CHUNK, dim), device=y.device)
        basis = torch.zeros(len(idx), batch, dim, dtype=y.dtype, device=y.device)
        basis[torch.arange(len(idx)), :, idx] = 1.0
        out = vmap(directional)(basis.reshape(len(idx), batch, *shape))
        total += out.reshape(len(idx), batch, dim)[torch.arange(len(idx)), :, idx].sum(0)
    return total


def hutchinson_trace(
    field: Field,
    y: torch.Tensor,
    n_probes: int,
    generator: torch.Generator | None = None,
    kind: str = "rademacher",
) -> torch.Tensor:
    """(1/M) Σ vᵀ J v per sample, with M Gaussian or Rademacher probes."""
    if n_probes < 1:
        raise ValueError("n_probes must be at least 1")
    total = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
    _, pullback = vjp(field, y)
    for _ in range(n_probes):
        v = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        if kind == "rademacher":
            v = v.sign()
        elif kind != "gaussian":
            raise ValueError("kind must be 'rademacher' or 'gaussian'")
        total += (pullback(v)[0] * v).flatten(1).sum(1)
    return total / n_probes


def _trace(
    field: Field, y: torch.Tensor, n_probes: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    dim = y[0].numel()
    if n_probes is None:
        if dim > EXACT_TRACE_MAX_DIM:
            raise ValueError(f"an exact trace over {dim} dimensions is too costly: give n_probes")
        return exact_trace(field, y)
    return hutchinson_trace(field, y, n_probes, generator)


def _trace_and_norm(
    field: Field,
    x: torch.Tensor,
    psi: float,
    n_probes: int | None,
    generator: torch.Generator | None,
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(D, tr ∇f(y), ‖f(y)‖²) at y = ψ·x, per sample."""
    y = psi * x
    trace = _trace(field, y, n_probes, generator)
    return x[0].numel(), trace, field(y).flatten(1).pow(2).sum(1)


def flipd_from_score(
    score: Field,
    x: torch.Tensor,
    psi: float,
    sigma: float,
    n_probes: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """FLIPD per sample from a score model s(y, t₀); n_probes None: the exact trace."""
    dim, trace, norm = _trace_and_norm(score, x, psi, n_probes, generator)
    return dim + sigma**2 * (trace + norm)


def flipd_from_eps(
    eps: Field,
    x: torch.Tensor,
    psi: float,
    sigma: float,
    n_probes: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """FLIPD per sample from an ε-prediction model ε̂(y, t₀) (VP: ψ = √ᾱ, σ = √(1−ᾱ))."""
    dim, trace, norm = _trace_and_norm(eps, x, psi, n_probes, generator)
    return dim - sigma * trace + norm
