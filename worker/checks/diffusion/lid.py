"""How `lid` computes: FLIPD of the model at t₀ and along a grid, against LPCA of the
training data, read as overfitting-driven or data-driven memorization (Ross et al. 2025)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from core.inspection.datasets import DatasetError, Record
from worker.checks.diffusion.basin import group_of, mean_or_none, rounded
from worker.checks.diffusion.kinds import LidParams
from worker.checks.diffusion.passes import DiffusionContext, conditions_of, eps_pair, initial_noise
from worker.engine.diffusion.flipd import flipd_from_eps
from worker.engine.diffusion.guidance import combine
from worker.engine.diffusion.plans import GuidancePlan
from worker.engine.diffusion.sampling import guided_sample, nearest_similarity, pixel_embedding
from worker.loaders.diffusion_models import LoadedDiffusion


def _flipd(
    pipeline: LoadedDiffusion,
    conditions: Sequence[Any],
    x: torch.Tensor,
    timestep: int,
    scale: float,
    probes: int | None,
) -> list[float]:
    alpha_bar = float(pipeline.scheduler.alphas_cumprod[timestep])
    pair = eps_pair(pipeline, conditions)
    t = torch.tensor(timestep, device=pipeline.device)

    def eps(y: torch.Tensor) -> torch.Tensor:
        eps_c, eps_u = pair(y, t)
        return combine(eps_u, eps_c, scale)

    generator = torch.Generator(device=pipeline.device).manual_seed(0)
    with torch.enable_grad():
        found = flipd_from_eps(eps, x, alpha_bar**0.5, (1 - alpha_bar) ** 0.5, probes, generator)
    return [float(v) for v in found.detach().cpu()]


def _reading(flipd: float, lpca_value: float, params: LidParams) -> str:
    """Ross et al.: overfitting-driven below the data's LID, data-driven when both are small."""
    if flipd < lpca_value - params.od_margin:
        return "od_mem"
    if abs(flipd - lpca_value) <= params.od_margin and lpca_value <= params.dd_max:
        return "dd_mem"
    return "none"


def compute(
    context: DiffusionContext, records: Sequence[Record], params: LidParams
) -> list[dict[str, Any]]:
    pipeline = context.pipeline
    conditions = conditions_of(records, pipeline)
    training, _labels = context.training_images(params.training_images)
    samples = []
    for record in records:
        index = record.data.get("image_index")
        if index is None:
            samples.append(None)
        elif not isinstance(index, int) or not 0 <= index < len(training):
            raise DatasetError(record.line_no, f"image_index must be 0..{len(training) - 1}")
        else:
            samples.append(training[index])
    missing = [i for i, s in enumerate(samples) if s is None]
    if missing:  # generated, then scored where they landed
        plan = GuidancePlan("cfg", params.guidance_scale, num_steps=params.num_steps)
        noise = torch.stack(
            [initial_noise(pipeline, int(records[i].data.get("seed", 42))) for i in missing]
        ).to(pipeline.device)
        pair = eps_pair(pipeline, [conditions[i] for i in missing])
        with torch.inference_mode():
            made = guided_sample(pair, pipeline.scheduler, noise, plan).samples
        for k, i in enumerate(missing):
            samples[i] = made[k].clone()
    x = torch.stack([torch.as_tensor(s) for s in samples]).to(pipeline.device)
    scale = params.guidance_scale if params.flipd_guidance is None else params.flipd_guidance
    probes = params.hutchinson_samples
    at_t0 = _flipd(pipeline, conditions, x, params.t0, scale, probes)
    curve = {
        t: _flipd(pipeline, conditions, x, t, scale, probes) for t in sorted(set(params.t0_grid))
    }
    data_lid = context.lpca(params.training_images, params.lpca_neighbors)
    queries = pixel_embedding(x.float().cpu()).numpy()
    nearest = nearest_similarity(torch.as_tensor(queries), pixel_embedding(training))[1]
    rows = []
    for i, record in enumerate(records):
        lpca_value = float(data_lid[int(nearest[i])])
        rows.append(
            {
                "id": record.sample_id,
                "memorized": record.data.get("memorized"),
                "source": "training" if record.data.get("image_index") is not None else "generated",
                "flipd": at_t0[i],
                "flipd_curve": {str(t): values[i] for t, values in curve.items()},
                "lpca": lpca_value,
                "reading": _reading(at_t0[i], lpca_value, params),
            }
        )
    return rows


def summarize(values: Sequence[dict[str, Any]], params: LidParams) -> dict[str, Any]:
    readings: dict[str, int] = {}
    for v in values:
        readings[v["reading"]] = readings.get(v["reading"], 0) + 1
    groups: dict[str, list[dict[str, Any]]] = {}
    for v in values:
        groups.setdefault(group_of(v), []).append(v)
    grid = sorted({t for v in values for t in v["flipd_curve"]}, key=int)
    return {
        "n": len(values),
        "t0": params.t0,
        "mean_flipd": mean_or_none([v["flipd"] for v in values]),
        "mean_lpca": mean_or_none([v["lpca"] for v in values]),
        "readings": readings,
        "by_group": {
            name: {
                "n": len(group),
                "mean_flipd": mean_or_none([v["flipd"] for v in group]),
                "flipd": rounded([v["flipd"] for v in group], 4)[:5000],
                "curve": {t: mean_or_none([v["flipd_curve"][t] for v in group]) for t in grid},
            }
            for name, group in groups.items()
        },
    }
