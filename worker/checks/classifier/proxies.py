"""How `proxies` computes: per-record memorization proxies from the final model, logged
learning events, a held-out fine-tuned copy, input curvature and subset models."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from core.inspection.datasets import DatasetError
from worker.checks.classifier.kinds import (
    ALL_PROXIES,
    FINAL_MODEL,
    LEARNING_EVENTS,
    ProxyParams,
    proxy_rank,
)
from worker.checks.classifier.passes import HELDOUT, ClassifierContext, LabelledRecord
from worker.engine.classifier_ops import input_curvature
from worker.engine.distributions import quantile_summary, shared_histogram
from worker.engine.proxies import (
    HIGHER_IS_MORE_MEMORIZED,
    feldman_memorization,
    learning_event_proxies,
    mem_score,
    prediction_proxies,
    summarize_correlations,
    symmetric_kl,
)


def _history(record: LabelledRecord) -> list[dict[str, Any]] | None:
    history = record.data.get("epoch_probs")
    if history is None:
        return None
    array = np.asarray(history, dtype=np.float64)
    if array.ndim != 2 or len(array) == 0:
        raise DatasetError(record.line_no, "field 'epoch_probs' must be a list of probability rows")
    return learning_event_proxies(array, record.label)


def _feldman(record: LabelledRecord) -> dict[str, Any] | None:
    if "subset_in" not in record.data:
        return None
    mask, correct = record.data["subset_in"], record.data.get("subset_correct")
    try:
        value = feldman_memorization(mask, correct)
    except (ValueError, TypeError):
        raise DatasetError(
            record.line_no,
            "fields 'subset_in' and 'subset_correct' must be 0/1 lists of one length",
        ) from None
    inside = int(np.sum(np.asarray(mask, dtype=bool)))
    return {"feldman_mem": value, "n_in": inside, "n_out": len(mask) - inside}


def compute(
    context: ClassifierContext, records: Sequence[LabelledRecord], params: ProxyParams
) -> list[dict[str, Any]]:
    wanted = set(params.proxies)
    train = [r for r in records if r.split != HELDOUT]
    probs = context.probs(train) if train else np.zeros((0, 0))
    labels = np.asarray([r.label for r in train])
    final = prediction_proxies(probs, labels) if train else {}
    kl = None
    if "heldout_kl" in wanted and train:
        tuned = context.heldout_copy(params.ft_lr, params.ft_epochs, params.patience)
        if tuned is not None:
            kl = symmetric_kl(probs, context.probs(train, tuned.module), params.clamp)
    curvature = None
    if "curvature" in wanted and train and context.model.input_kind == "features":
        parts = []
        for start in range(0, len(train), context.batch_size):
            chunk = train[start : start + context.batch_size]
            x = context.model.batch([r.input for r in chunk])
            y = torch.tensor([r.label for r in chunk], device=context.model.device)
            parts.append(
                input_curvature(context.model.module, context.model.logits, x, y, params.h)
            )
        curvature = np.concatenate(parts)
    rows, position = [], {id(r): i for i, r in enumerate(train)}
    for record in records:
        if record.split == HELDOUT:
            rows.append(
                {"id": record.sample_id, "split": HELDOUT, "skipped": True, "reason": "heldout"}
            )
            continue
        i = position[id(record)]
        values: dict[str, Any] = {
            "id": record.sample_id,
            "label": record.label,
            "predicted": int(probs[i].argmax()),
        }
        if record.split:
            values["split"] = record.split
        raw: dict[str, float | None] = {n: float(final[n][i]) for n in FINAL_MODEL if n in wanted}
        if wanted & set(LEARNING_EVENTS):
            events = _history(record)
            if events is not None:
                raw.update({n: events[n] for n in LEARNING_EVENTS if n in wanted})
        if kl is not None:
            raw["heldout_kl"] = float(kl[i])
        if curvature is not None:
            raw["curvature"] = float(curvature[i])
        if "feldman_mem" in wanted:
            found = _feldman(record)
            if found is not None:
                raw["feldman_mem"] = found.pop("feldman_mem")
                values.update(found)
        values.update(raw)
        values["mem_score"] = {name: mem_score(name, value) for name, value in raw.items()}
        image = _thumbnail(record.input, params.image_shape or _image_shape(context))
        if image is not None:
            values["detail"] = {"image": image}
        rows.append(values)
    return rows


THUMBNAIL_SIDE = 32


def _image_shape(context: ClassifierContext) -> list[int] | None:
    shape = context.model.input_shape
    return list(shape) if shape is not None and len(shape) == 3 else None


def _thumbnail(features: Any, shape: list[int] | None) -> list[list[float]] | None:
    """A grey-scale picture of an image input, at most 32 pixels a side, min-max scaled."""
    if shape is None or not isinstance(features, list):
        return None
    array = np.asarray(features, dtype=np.float64)
    if array.size != int(np.prod(shape)):
        return None
    array = array.reshape(shape)
    if array.ndim == 3:
        array = array.mean(axis=0) if array.shape[0] <= 4 else array.mean(axis=2)
    step = max(1, math.ceil(max(array.shape) / THUMBNAIL_SIDE))
    array = array[::step, ::step]
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return np.round(scaled, 3).tolist()


def model_facts(context: ClassifierContext, params: ProxyParams) -> dict[str, Any]:
    if "heldout_kl" not in params.proxies:
        return {}
    tuned = context.heldout_copy(params.ft_lr, params.ft_epochs, params.patience)
    if tuned is None:
        return {"heldout_kl": {"reason": "no records with split: heldout"}}
    return {
        "heldout_kl": {
            "epochs_run": tuned.epochs_run,
            "best_epoch": tuned.best_epoch,
            "heldout_losses": [round(v, 6) for v in tuned.losses],
            "lr": params.ft_lr,
            "seed": params.seed,
        }
    }


def summarize(values: Sequence[dict[str, Any]], params: ProxyParams) -> dict[str, Any]:
    scored = [v for v in values if not v.get("skipped")]
    present = [n for n in ALL_PROXIES if any(v.get(n) is not None for v in scored)]
    summary: dict[str, Any] = {
        "n_samples": len(values),
        "n_scored": len(scored),
        "n_heldout": sum(1 for v in values if v.get("split") == HELDOUT),
        "rank_by": params.rank_by,
        "proxies": {},
        "missing": sorted(set(params.proxies) - set(present)),
    }
    for name in present:
        raw = np.asarray([v[name] for v in scored if v.get(name) is not None], dtype=np.float64)
        summary["proxies"][name] = {
            "higher_is_more_memorized": HIGHER_IS_MORE_MEMORIZED[name],
            "n": len(raw),
            **quantile_summary(raw),
            "histogram": shared_histogram({"all": raw.tolist()}),
        }
    ranked = sorted(
        (v for v in scored if proxy_rank(v, params) is not None),
        key=lambda v: -proxy_rank(v, params),
    )
    summary["most_memorized"] = [
        {
            "id": v["id"],
            "label": v.get("label"),
            "predicted": v.get("predicted"),
            "score": proxy_rank(v, params),
            **{n: v.get(n) for n in present},
        }
        for v in ranked[: params.top_n]
    ]
    summary["spearman"] = summarize_correlations(scored, present)
    if "feldman_mem" in present:
        summary["against_feldman"] = {
            n: summary["spearman"][n]["feldman_mem"] for n in present if n != "feldman_mem"
        }
    return summary
