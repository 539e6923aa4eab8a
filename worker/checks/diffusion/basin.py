"""How `cfg_basin` and `cfg_mitigation` compute: generations under each guidance schedule,
their Δ curves and transition points, and each one's nearest training image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.inspection.datasets import Record
from worker.checks.diffusion.kinds import BasinParams, MitigationParams
from worker.checks.diffusion.passes import DiffusionContext, generate
from worker.engine.diffusion.guidance import detection_score, dynamic_transition
from worker.engine.diffusion.plans import GuidancePlan
from worker.engine.diffusion.sampling import per_step_mean

EXEMPLARS = 12


def compute_basin(
    context: DiffusionContext, records: Sequence[Record], params: BasinParams
) -> list[dict[str, Any]]:
    plan = GuidancePlan("cfg", params.guidance_scale, num_steps=params.num_steps)
    per_record = generate(context, records, params, plan)
    rows = []
    for record, runs in zip(records, per_record, strict=True):
        best = max(runs, key=lambda r: r["similarity"])
        rows.append(
            {
                "id": record.sample_id,
                "memorized": record.data.get("memorized"),
                "condition": record.data.get("class_label", record.data.get("prompt")),
                "detection_score": float(
                    np.mean([detection_score(r["deltas"], params.detection) for r in runs])
                ),
                "similarity_max": best["similarity"],
                "copies": best["similarity"] >= params.threshold(),
                "nearest": best["nearest"],
                "nearest_label": best["nearest_label"],
                # Δ per step, averaged over the seeds: what the summary's curves are made of.
                "delta_curve": [round(d, 5) for d in per_step_mean([r["deltas"] for r in runs])],
                # Where DTP would switch guidance on: the official local-minimum rule on Δ.
                "transition": [dynamic_transition(r["deltas"]) for r in runs],
                "detail": {"runs": runs},
            }
        )
    return rows


def as_float(value: float | None) -> float:
    """A stored per-record number as the float it was: JSON columns keep NaN and infinities as
    null (core/db.py), so None reads as NaN, which numpy carries through a mean as before."""
    return math.nan if value is None else float(value)


def mean_or_none(values: Sequence[float | None]) -> float | None:
    return float(np.mean([as_float(v) for v in values])) if len(values) else None


def rounded(values: Sequence[float | None], digits: int) -> list[float | None]:
    """Each number rounded for a summary's list; one stored as null stays None."""
    return [None if v is None else round(v, digits) for v in values]


def _most_similar_first(value: dict[str, Any]) -> tuple[bool, float]:
    """Sort key: the highest similarity first, one that was not finite (None) last."""
    similarity = value["similarity_max"]
    return similarity is None, -(similarity or 0.0)


def group_of(value: dict[str, Any]) -> str:
    return {True: "memorized", False: "not_memorized"}.get(value.get("memorized"), "unlabelled")


def _median_transitions(values: Sequence[dict[str, Any]]) -> dict[str, float]:
    steps: dict[str, list[int]] = {}
    for v in values:
        steps.setdefault(group_of(v), []).extend(t for t in v["transition"] if t is not None)
    return {k: float(np.median(s)) for k, s in steps.items() if s}


def _group_curves(values: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    groups: dict[str, list[list[float]]] = {}
    for v in values:
        groups.setdefault(group_of(v), []).append([as_float(d) for d in v["delta_curve"]])
    return {k: per_step_mean(c) for k, c in groups.items()}


def summarize_basin(values: Sequence[dict[str, Any]], params: BasinParams) -> dict[str, Any]:
    scores = [v["detection_score"] for v in values]
    summary: dict[str, Any] = {
        "n": len(values),
        "guidance_scale": params.guidance_scale,
        "embedding": params.embedding,
        "threshold": params.threshold(),
        "copy_rate": float(np.mean([v["copies"] for v in values])) if values else None,
        "mean_similarity": mean_or_none([v["similarity_max"] for v in values]),
        "mean_detection_score": mean_or_none(scores),
        "delta_curves": _group_curves(values),
        "median_transition": _median_transitions(values),
        "by_flag": {},
        "most_similar": [
            {"id": v["id"], "similarity": v["similarity_max"]}
            for v in sorted(values, key=_most_similar_first)[:EXEMPLARS]
        ],
    }
    for flag, name in ((True, "memorized"), (False, "not_memorized")):
        group = [v for v in values if v.get("memorized") is flag]
        if group:
            summary["by_flag"][name] = {
                "n": len(group),
                "detection_score": mean_or_none([v["detection_score"] for v in group]),
                "similarity": mean_or_none([v["similarity_max"] for v in group]),
                "copy_rate": float(np.mean([v["copies"] for v in group])),
            }
    return summary


def compute_mitigation(
    context: DiffusionContext, records: Sequence[Record], params: MitigationParams
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "memorized": r.data.get("memorized"),
            "condition": r.data.get("class_label", r.data.get("prompt")),
            "similarity": {},
            "copies": {},
            "aligned": {},
            "detail": {"runs": {}},
        }
        for r in records
    ]
    for method in params.methods:
        per_record = generate(context, records, params, params.plan(method))
        for record, row, runs in zip(records, rows, per_record, strict=True):
            best = max(runs, key=lambda r: r["similarity"])
            row["similarity"][method] = best["similarity"]
            row["copies"][method] = best["similarity"] >= params.threshold()
            row["aligned"][method] = _alignment(record, runs)
            row["detail"]["runs"][method] = runs
    for row in rows:
        row["similarity_reduction"] = row["similarity"].get("cfg", 0) - min(
            row["similarity"].values()
        )
    return rows


def _alignment(record: Record, runs: Sequence[dict[str, Any]]) -> float | None:
    """How well a record's generations match what was asked: the mean CLIP score against the
    prompt, or for a class-conditional model the share whose nearest training image is of the
    class asked for; None when neither can be read."""
    clips = [r["clip"] for r in runs if r["clip"] is not None]
    if clips:
        return float(np.mean(clips))
    label = record.data.get("class_label")
    agree = [r["nearest_label"] == label for r in runs if r["nearest_label"] is not None]
    return float(np.mean(agree)) if agree and label is not None else None


def summarize_mitigation(
    values: Sequence[dict[str, Any]], params: MitigationParams
) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for method in params.methods:
        sims = [v["similarity"][method] for v in values]
        aligned = [v["aligned"][method] for v in values if v["aligned"][method] is not None]
        methods[method] = {
            "mean_similarity": mean_or_none(sims),
            "copy_rate": float(np.mean([v["copies"][method] for v in values])) if values else None,
            "similarities": rounded(sims, 4)[:2000],
            "alignment": float(np.mean(aligned)) if aligned else None,
        }
    plain = methods.get("cfg", {}).get("alignment")
    for entry in methods.values():
        # What a mitigation costs in alignment, against plain CFG.
        known = plain is not None and entry["alignment"] is not None
        entry["alignment_cost"] = plain - entry["alignment"] if known else None
    return {
        "n": len(values),
        "embedding": params.embedding,
        "threshold": params.threshold(),
        "alignment_measure": "clip" if params.clip_model else "class_agreement",
        "methods": methods,
    }
