"""How `capacity` computes: training accuracy and each record's nearest differently labelled
point, and the capacity bounds read from the model's config."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.checks.classifier.kinds import CapacityParams
from worker.checks.classifier.passes import ClassifierContext, LabelledRecord
from worker.engine.capacity import attention_capacity, nearest_cross_class, width_flag
from worker.engine.distributions import shared_histogram


def compute(
    context: ClassifierContext, records: Sequence[LabelledRecord], params: CapacityParams
) -> list[dict[str, Any]]:
    model = context.model
    probs = context.probs(records) if model.n_classes else None
    distances = nearest = None
    if model.input_kind == "features" and all(r.label is not None for r in records):
        x, y, ids = context.all_features
        reference = np.arange(len(x))
        if len(x) > params.exact_pairwise_max_n:
            rng = np.random.default_rng(params.seed)
            reference = np.sort(rng.choice(len(x), params.exact_pairwise_max_n, replace=False))
        queries = np.asarray([np.ravel(np.asarray(r.input, dtype=np.float64)) for r in records])
        distances, nearest = nearest_cross_class(
            x[reference], y[reference], queries, np.asarray([r.label for r in records])
        )
        nearest = np.where(nearest >= 0, reference[np.maximum(nearest, 0)], -1)
    rows = []
    for i, record in enumerate(records):
        values: dict[str, Any] = {"id": record.sample_id, "label": record.label}
        if probs is not None and record.label is not None:
            values["correct"] = bool(int(probs[i].argmax()) == record.label)
        if distances is not None:
            finite = math.isfinite(distances[i])
            values["nearest_cross_class"] = float(distances[i]) if finite else None
            values["nearest_id"] = ids[nearest[i]] if finite else None
        rows.append(values)
    return rows


def model_facts(context: ClassifierContext, params: CapacityParams) -> dict[str, Any]:
    model = context.model
    details = dict(model.details)
    facts: dict[str, Any] = {
        "architecture": details.get("architecture"),
        "param_count": int(sum(p.numel() for p in model.module.parameters())),
    }
    heads, width = details.get("num_attention_heads"), details.get("hidden_size")
    if heads and width and details.get("vocab_size"):
        d_head = width // heads
        bound = attention_capacity(
            n_tokens=details["vocab_size"],
            d=width,
            d_head=d_head,
            heads=heads,
            associations=params.associations or max(context.n_records, 1),
            context=params.context_length or details.get("max_position_embeddings") or 2,
        )
        facts["attention"] = {
            **bound.to_json(),
            "scope": "one attention layer of this width and head count (Dana et al., AISTATS "
            "2025); it bounds what one such layer can store, not the whole model",
        }
    if details.get("hidden_widths"):
        facts["width"] = width_flag(details["hidden_widths"], details["input_dim"])
    return facts


def summarize(values: Sequence[dict[str, Any]], params: CapacityParams) -> dict[str, Any]:
    correct = [v["correct"] for v in values if v.get("correct") is not None]
    summary: dict[str, Any] = {"n_samples": len(values)}
    if correct:
        accuracy = float(np.mean(correct))
        summary["training_accuracy"] = accuracy
        summary["interpolates"] = accuracy == 1.0
    distances = [
        v["nearest_cross_class"] for v in values if v.get("nearest_cross_class") is not None
    ]
    if distances:
        summary["separation_bound"] = float(min(distances))
        summary["contradictory_pairs"] = sorted(
            {
                tuple(sorted((v["id"], v["nearest_id"])))
                for v in values
                if v.get("nearest_cross_class") == 0.0
            }
        )
        summary["nearest_cross_class_histogram"] = shared_histogram({"all": distances})
        summary["separation_note"] = (
            "c(D) = 0: identical inputs carry different labels, which no function can memorize"
            if summary["separation_bound"] == 0.0
            else "c(D) > 0: every differently labelled pair is at least c(D) apart"
        )
    return summary
