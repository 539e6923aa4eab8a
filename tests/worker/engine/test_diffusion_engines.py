"""METRICS.md §9 validation facts for the diffusion engines: the CFG combiner, the static and
dynamic transition schedules, opposite guidance's switch, FLIPD on an analytic Gaussian, LPCA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.engine.diffusion.flipd import (
    exact_trace,
    flipd_from_eps,
    flipd_from_score,
    hutchinson_trace,
)
from worker.engine.diffusion.guidance import (
    combine,
    detection_score,
    dynamic_schedule,
    dynamic_transition,
    guidance_gap,
    latent_turning,
    opposite_schedule,
    opposite_transition,
    static_schedule,
)
from worker.engine.diffusion.lpca import lpca


def test_the_combiner_identities() -> None:
    generator = torch.Generator().manual_seed(0)
    eps_u, eps_c = (torch.randn(3, 4, 8, 8, generator=generator) for _ in range(2))
    assert torch.equal(combine(eps_u, eps_c, 0.0), eps_u)
    assert torch.equal(combine(eps_u, eps_c, 1.0), eps_c)
    assert torch.allclose(combine(eps_u, eps_c, 7.5), eps_u + 7.5 * (eps_c - eps_u), atol=1e-5)
    # Affine in s: the midpoint of two scales is the scale of the midpoint.
    middle = (combine(eps_u, eps_c, -2.0) + combine(eps_u, eps_c, 7.5)) / 2
    assert torch.allclose(middle, combine(eps_u, eps_c, 2.75), atol=1e-6)
    per_sample = combine(eps_u, eps_c, torch.tensor([0.0, 1.0, 7.5]))
    assert torch.equal(per_sample[0], eps_u[0]) and torch.equal(per_sample[1], eps_c[1])


def test_the_gap_is_per_sample() -> None:
    eps_u = torch.zeros(2, 4, 2, 2)
    eps_c = torch.stack([torch.full((4, 2, 2), 1.0), torch.full((4, 2, 2), 2.0)])
    assert guidance_gap(eps_u, eps_c).tolist() == [4.0, 8.0]  # √16·1, √16·2
    assert detection_score([3.0, 1.0, 2.0]) == 2.0 and detection_score([3.0, 1.0], "first") == 3.0


def test_the_dynamic_transition_example() -> None:
    deltas = [9, 7, 5, 4, 4.5, 6, 5]
    fire = dynamic_transition(deltas)
    assert fire == 4
    assert dynamic_schedule(len(deltas), fire) == [1, 1, 1, 1, 7.5, 7.5, 7.5]
    assert dynamic_transition([9, 8, 7, 6, 5]) is None
    assert dynamic_schedule(3, None) == [1.0, 1.0, 1.0]
    # The packaged re-implementation's condition fires in the middle of the descent.
    wrong = next(j for j in range(2, len(deltas)) if deltas[j - 2] > deltas[j - 1] > deltas[j])
    assert wrong == 2 != fire


def test_the_static_schedule_on_the_reference_timesteps() -> None:
    timesteps = [int(t) for t in np.round(np.linspace(0, 999, 51))[::-1][:-1]]
    assert timesteps[0] == 999 and timesteps[-1] == 20 and len(timesteps) == 50
    delayed = static_schedule(timesteps, 500, 0.0, 7.5)
    assert delayed[:25] == [0.0] * 25 and delayed[25] == 7.5 and timesteps[25] == 500
    assert static_schedule(timesteps, 650, -2.0, 7.5).count(-2.0) == 18
    assert static_schedule([999], 998, 0.0, 7.5) == [0.0]


def test_the_opposite_guidance_switch() -> None:
    assert opposite_transition([5, 3, 4, 2, 6]) == 3
    assert opposite_transition([5, 3, 4, 6, 7]) == 1
    assert opposite_transition([5, 4, 3, 2, 1]) == 5
    assert opposite_schedule(4, 2, 7.5) == [-7.5, -7.5, 7.5, 7.5]
    line = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])]
    assert latent_turning(line) == pytest.approx([1 - 2**-0.5, 1 - 2**-0.5])


D, SUBSPACE = 10, 3
X = torch.tensor([[0.5, -1.0, 0.3] + [0.0] * (D - SUBSPACE)], dtype=torch.float64)


def _gaussian_score(psi: float, sigma: float):
    """s(y) = −(ψ²Σ + σ²I)⁻¹ y for x₀ ∼ N(0, diag(1, 1, 1, 0, …, 0))."""
    variance = torch.tensor([1.0] * SUBSPACE + [0.0] * (D - SUBSPACE), dtype=torch.float64)
    precision = 1.0 / (psi**2 * variance + sigma**2)
    return lambda y: -precision * y


@pytest.mark.parametrize(
    ("sigma2", "expected"), [(1e-2, "2.98327"), (1e-4, "2.99983"), (1e-6, "2.9999983")]
)
def test_flipd_on_gaussian_data_on_a_subspace(sigma2: float, expected: str) -> None:
    sigma, psi = sigma2**0.5, (1 - sigma2) ** 0.5
    score = _gaussian_score(psi, sigma)
    by_score = flipd_from_score(score, X, psi, sigma)
    half_unit = 0.5 * 10 ** -len(expected.split(".")[1])  # the table's rounding
    assert by_score.item() == pytest.approx(float(expected), abs=half_unit)
    eps = lambda y: -sigma * score(y)  # noqa: E731
    assert flipd_from_eps(eps, X, psi, sigma).item() == pytest.approx(by_score.item(), rel=1e-9)
    closed_form = 3 - 3 * sigma2 + sigma2 * (1 - sigma2) * 1.34
    assert by_score.item() == pytest.approx(closed_form, rel=1e-12)


def test_the_exact_trace_and_hutchinson_converge() -> None:
    sigma, psi = 0.1, (1 - 0.01) ** 0.5
    score = _gaussian_score(psi, sigma)
    y = (psi * X).repeat(2, 1)
    exact = exact_trace(score, y)
    assert exact.tolist() == pytest.approx([-(3 / (psi**2 + sigma**2) + 7 / sigma**2)] * 2)
    generator = torch.Generator().manual_seed(0)
    estimate = hutchinson_trace(score, y, 2000, generator, kind="gaussian")
    assert estimate.tolist() == pytest.approx(exact.tolist(), rel=0.05)
    # A diagonal Jacobian: Rademacher probes are exact.
    assert hutchinson_trace(score, y, 1, generator).tolist() == pytest.approx(exact.tolist())
    many = flipd_from_score(score, X, psi, sigma, n_probes=4000, generator=generator)
    assert many.item() == pytest.approx(flipd_from_score(score, X, psi, sigma).item(), abs=0.05)


def test_lpca_on_a_plane_in_five_dimensions() -> None:
    grid = np.array([(i, j) for i in range(12) for j in range(12)], dtype=float)
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(5, 2)))
    points = grid @ basis.T + rng.normal(size=5)
    dims = lpca(points, n_neighbors=25)
    assert set(dims.tolist()) == {2}
    assert lpca(points, n_neighbors=25, queries=points[:3] + 0.01).tolist() == [2, 2, 2]
    line = np.outer(np.arange(30.0), rng.normal(size=5))
    assert set(lpca(line, n_neighbors=10).tolist()) == {1}
