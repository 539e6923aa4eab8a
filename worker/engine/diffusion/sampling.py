"""Guided sampling that records what the attraction-basin analysis needs: ε_c, ε_u and Δ_t at
every step, the scale each sample was given, and its transition point (METRICS.md §9).

The model enters as `eps_pair(x, t) -> (ε_c, ε_u)`, so the same loop serves a class-conditional
UNet, a text-conditional one, or an analytic field in a test. The scheduler is any diffusers-style
object with `set_timesteps`, `timesteps` and `step(...).prev_sample`; it is copied per call, since
multistep solvers keep state.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from worker.engine.diffusion.guidance import (
    combine,
    dynamic_transition,
    guidance_gap,
    latent_turning,
    opposite_transition,
    static_schedule,
)
from worker.engine.diffusion.plans import METHODS, GuidancePlan

EpsPair = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Trajectory:
    samples: torch.Tensor  # (B, ...) the final x_0 (latents, for a latent model)
    timesteps: list[int]
    deltas: list[list[float]]  # per sample, Δ at each step of the pass that made `samples`
    scales: list[list[float]]  # per sample, the scale used at each step
    transition: list[int | None] = field(default_factory=list)  # the step the schedule switched


def _run(
    eps_pair: EpsPair,
    scheduler: Any,
    noise: torch.Tensor,
    choose: Callable[[int, int, torch.Tensor, list[list[float]]], torch.Tensor],
    keep_latents: bool = False,
) -> tuple[torch.Tensor, list[list[float]], list[list[float]], list[torch.Tensor], list[int]]:
    """One pass; `choose(step, t, Δ_step, Δ_history)` gives the per-sample scales."""
    scheduler = copy.deepcopy(scheduler)
    x = noise * getattr(scheduler, "init_noise_sigma", 1.0)
    batch = noise.shape[0]
    deltas: list[list[float]] = [[] for _ in range(batch)]
    scales: list[list[float]] = [[] for _ in range(batch)]
    latents = [x.detach().clone()] if keep_latents else []
    timesteps = [int(t) for t in scheduler.timesteps]
    for step, t in enumerate(scheduler.timesteps):
        model_input = (
            scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x
        )
        eps_c, eps_u = eps_pair(model_input, t)
        gap = guidance_gap(eps_u, eps_c)
        for i, value in enumerate(gap.tolist()):
            deltas[i].append(value)
        scale = choose(step, int(t), gap, deltas)
        for i, value in enumerate(scale.tolist()):
            scales[i].append(value)
        x = scheduler.step(combine(eps_u, eps_c, scale), t, x).prev_sample
        if keep_latents:
            latents.append(x.detach().clone())
    return x, deltas, scales, latents, timesteps


def guided_sample(
    eps_pair: EpsPair, scheduler: Any, noise: torch.Tensor, plan: GuidancePlan
) -> Trajectory:
    """Sample a batch from `noise` under one guidance method."""
    if plan.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    scheduler = copy.deepcopy(scheduler)
    scheduler.set_timesteps(plan.num_steps)
    batch = noise.shape[0]
    ones = torch.ones(batch, dtype=torch.float64)
    if plan.method == "cfg":
        x, deltas, scales, _, timesteps = _run(
            eps_pair, scheduler, noise, lambda *_: ones * plan.scale
        )
        return Trajectory(x, timesteps, deltas, scales, [None] * batch)
    if plan.method == "stp":
        steps = [int(t) for t in scheduler.timesteps]
        schedule = static_schedule(steps, plan.tau, plan.before(), plan.scale)
        x, deltas, scales, _, timesteps = _run(
            eps_pair, scheduler, noise, lambda step, *_: ones * schedule[step]
        )
        switch = next((j for j, s in enumerate(schedule) if s == plan.scale), None)
        return Trajectory(x, timesteps, deltas, scales, [switch] * batch)
    if plan.method == "dtp":
        fired: list[int | None] = [None] * batch

        def dynamic(step: int, _t: int, _gap: torch.Tensor, history: list[list[float]]):
            for i, d in enumerate(history):
                if fired[i] is None and dynamic_transition(d) == step:
                    fired[i] = step
            return torch.tensor(
                [plan.before() if f is None else plan.scale for f in fired], dtype=torch.float64
            )

        x, deltas, scales, _, timesteps = _run(eps_pair, scheduler, noise, dynamic)
        return Trajectory(x, timesteps, deltas, scales, fired)
    # og_dtp: opposite guidance all along, the turning point of the latents, then a second pass.
    _, _, _, latents, _ = _run(
        eps_pair, scheduler, noise, lambda *_: ones * -plan.scale, keep_latents=True
    )
    turning = [latent_turning([z[i] for z in latents[1:]]) for i in range(batch)]
    tps = [opposite_transition(d) for d in turning]
    flip = torch.tensor(tps)

    def opposite(step: int, *_: Any) -> torch.Tensor:
        return torch.where(flip > step, -plan.scale, plan.scale).to(torch.float64)

    x, deltas, scales, _, timesteps = _run(eps_pair, scheduler, noise, opposite)
    return Trajectory(x, timesteps, deltas, scales, list(tps))


def nearest_similarity(
    generated: torch.Tensor, references: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine of each generated embedding to its nearest reference: (similarity, index)."""
    a = torch.nn.functional.normalize(generated.flatten(1).double(), dim=1)
    best = torch.full((len(a),), -2.0, dtype=torch.float64)
    where = torch.zeros(len(a), dtype=torch.long)
    for start in range(0, len(references), chunk):
        b = torch.nn.functional.normalize(
            references[start : start + chunk].flatten(1).double(), dim=1
        )
        sims = a @ b.T
        value, index = sims.max(dim=1)
        better = value > best
        best[better], where[better] = value[better], index[better] + start
    return best, where


def pixel_embedding(images: torch.Tensor) -> torch.Tensor:
    """The fallback embedding: pixels, centred per image so a uniform shift does not count."""
    flat = images.flatten(1).double()
    return flat - flat.mean(dim=1, keepdim=True)


def per_step_mean(curves: Sequence[Sequence[float]]) -> list[float]:
    if not curves:
        return []
    return [float(sum(c[j] for c in curves) / len(curves)) for j in range(len(curves[0]))]
