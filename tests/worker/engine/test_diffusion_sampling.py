"""Guided sampling with an analytic ε-model: each class is a narrow Gaussian around its own
mean, the unconditional model a wide one, so the exact ε of both is known in closed form and the
recorded Δ, scales and transitions can be checked against the schedule rules."""

from __future__ import annotations

import copy

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from worker.engine.diffusion.guidance import (  # noqa: E402
    combine,
    dynamic_transition,
    latent_turning,
    opposite_transition,
    static_schedule,
)
from worker.engine.diffusion.plans import GuidancePlan  # noqa: E402
from worker.engine.diffusion.sampling import guided_sample, nearest_similarity, pixel_embedding  # noqa: E402

SHAPE = (1, 4, 4)
MEANS = torch.stack(
    [torch.linspace(-1, 1, 16).reshape(SHAPE), -torch.linspace(-1, 1, 16).reshape(SHAPE)]
)


def _scheduler():
    return diffusers.DDIMScheduler(num_train_timesteps=1000)


def _gaussian_eps(mean: torch.Tensor, variance: float, alpha_bar: float, x: torch.Tensor):
    """ε̂(x_t) for x₀ ∼ N(mean, v·I): σ(x_t − √ᾱ·mean) / (ᾱ·v + σ²)."""
    sigma2 = 1 - alpha_bar
    return sigma2**0.5 * (x - alpha_bar**0.5 * mean) / (alpha_bar * variance + sigma2)


def _eps_pair(classes: torch.Tensor, scheduler):
    def pair(x: torch.Tensor, t: torch.Tensor):
        alpha_bar = float(scheduler.alphas_cumprod[int(t)])
        eps_c = _gaussian_eps(MEANS[classes], 1e-4, alpha_bar, x)
        eps_u = _gaussian_eps(torch.zeros_like(x), 1.0, alpha_bar, x)
        return eps_c, eps_u

    return pair


def _noise(n: int) -> torch.Tensor:
    return torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(0))


def test_conditional_sampling_lands_on_the_class_and_delta_is_per_sample() -> None:
    scheduler = _scheduler()
    classes = torch.tensor([0, 1, 0])
    found = guided_sample(
        _eps_pair(classes, scheduler),
        scheduler,
        _noise(3),
        GuidancePlan("cfg", scale=1.0, num_steps=30),
    )
    assert torch.allclose(found.samples, MEANS[classes], atol=0.05)
    assert len(found.timesteps) == 30 and all(len(d) == 30 for d in found.deltas)
    assert found.scales[0] == [1.0] * 30 and found.transition == [None] * 3
    similarity, nearest = nearest_similarity(pixel_embedding(found.samples), pixel_embedding(MEANS))
    assert nearest.tolist() == [0, 1, 0] and similarity.min() > 0.99
    # A single sample alone gets the same Δ as inside the batch.
    alone = guided_sample(
        _eps_pair(classes[1:2], scheduler),
        scheduler,
        _noise(3)[1:2],
        GuidancePlan("cfg", scale=1.0, num_steps=30),
    )
    assert alone.deltas[0] == pytest.approx(found.deltas[1])


def test_the_static_and_dynamic_schedules_as_sampled() -> None:
    scheduler = _scheduler()
    classes = torch.tensor([0, 1])
    pair = _eps_pair(classes, scheduler)
    stp = guided_sample(pair, scheduler, _noise(2), GuidancePlan("stp", tau=500, num_steps=50))
    assert stp.scales[0] == static_schedule(stp.timesteps, 500, 0.0, 7.5)
    assert stp.transition[0] == sum(t > 500 for t in stp.timesteps)
    dtp = guided_sample(pair, scheduler, _noise(2), GuidancePlan("dtp", num_steps=50))
    for deltas, scales, fired in zip(dtp.deltas, dtp.scales, dtp.transition, strict=True):
        assert fired == dynamic_transition(deltas)
        start = len(scales) if fired is None else fired
        assert scales == [1.0] * start + [7.5] * (len(scales) - start)


def test_opposite_guidance_switches_at_the_latents_turning_point() -> None:
    scheduler = _scheduler()
    classes = torch.tensor([0, 1])
    pair = _eps_pair(classes, scheduler)
    plan = GuidancePlan("og_dtp", num_steps=20)
    found = guided_sample(pair, scheduler, _noise(2), plan)
    for i, tp in enumerate(found.transition):
        assert found.scales[i] == [-7.5] * tp + [7.5] * (20 - tp)
    # The first pass, redone here by hand: opposite guidance all along, its latents' turning
    # point per sample is where the second pass switches.
    manual = copy.deepcopy(scheduler)
    manual.set_timesteps(20)
    x, latents = _noise(2), []
    for t in manual.timesteps:
        eps_c, eps_u = pair(x, t)
        x = manual.step(combine(eps_u, eps_c, -7.5), t, x).prev_sample
        latents.append(x)
    expected = [opposite_transition(latent_turning([z[i] for z in latents])) for i in range(2)]
    assert found.transition == expected
    with pytest.raises(ValueError, match="method"):
        guided_sample(pair, scheduler, _noise(2), GuidancePlan("bogus"))
    assert opposite_transition(latent_turning([torch.ones(2)] * 3)) == 5
