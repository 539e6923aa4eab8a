"""How `unlearning` computes: the three models' predictions per record, then accuracy by
split, Tug-of-War, membership attacks on the forget set, and levels of memorization."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.inspection.datasets import DatasetError
from worker.checks.classifier.passes import ClassifierContext, LabelledRecord
from worker.checks.unlearning.kinds import MODELS, UnlearningParams
from worker.engine.membership import roc_curve
from worker.engine.proxies import mem_score, prediction_proxies, rum_levels
from worker.engine.unlearning import SPLITS, mia_features, svc_mia, tug_of_war, tug_of_war_mia


def _split(record: LabelledRecord) -> str:
    if record.split not in SPLITS:
        raise DatasetError(record.line_no, f"field 'split' must be one of {list(SPLITS)}")
    return record.split


def compute(
    context: ClassifierContext, records: Sequence[LabelledRecord], params: UnlearningParams
) -> list[dict[str, Any]]:
    splits = [_split(r) for r in records]
    labels = np.asarray([r.label for r in records])
    probs = {"unlearned": context.probs(records)}
    for name, uri in (("original", params.original_model), ("retrained", params.retrained_model)):
        if uri is not None:
            probs[name] = context.probs_of(uri, records)
    proxies = {name: prediction_proxies(p, labels) for name, p in probs.items()}
    features = {name: mia_features(p, labels) for name, p in probs.items()}
    basis = "original" if "original" in probs else "unlearned"
    rows = []
    for i, record in enumerate(records):
        values: dict[str, Any] = {
            "id": record.sample_id,
            "label": record.label,
            "split": splits[i],
            "correct": {name: bool(proxies[name]["bi_acc"][i]) for name in probs},
            "confidence": {name: float(proxies[name]["confidence"][i]) for name in probs},
            "mia_features": {name: features[name][i].tolist() for name in probs},
        }
        if params.stratify_by == "feldman_mem":
            value = record.data.get("feldman_mem")
            values["stratify_score"] = float(value) if isinstance(value, int | float) else None
        else:
            raw = float(proxies[basis][params.stratify_by][i])
            values["stratify_score"] = mem_score(params.stratify_by, raw)
        values["stratify_basis"] = basis
        rows.append(values)
    return rows


def _accuracy(rows: Sequence[Mapping[str, Any]], model: str, split: str) -> float | None:
    found = [r["correct"][model] for r in rows if r["split"] == split and model in r["correct"]]
    return 100.0 * float(np.mean(found)) if found else None


def _features(rows: Sequence[Mapping[str, Any]], model: str, split: str) -> np.ndarray:
    found = [r["mia_features"][model] for r in rows if r["split"] == split]
    return np.asarray(found, dtype=np.float64).reshape(-1, 3)


def _membership(rows: Sequence[Mapping[str, Any]], model: str) -> dict[str, Any]:
    """RUM's SVC attack (share of the forget set called members) and the forget-vs-test AUROC
    of the model's confidence (higher = member)."""
    forget = [r for r in rows if r["split"] == "forget"]
    test = [r for r in rows if r["split"] == "test"]
    result: dict[str, Any] = {"svc_mia": None, "forget_vs_test_auc": None}
    if forget and test:
        result["forget_vs_test_auc"] = roc_curve(
            [r["confidence"][model] for r in forget], [r["confidence"][model] for r in test]
        ).auc
    if forget and test and any(r["split"] == "retain" for r in rows):
        result["svc_mia"] = svc_mia(
            _features(rows, model, "retain"),
            _features(rows, model, "test"),
            _features(rows, model, "forget"),
        )
    return result


def summarize(values: Sequence[dict[str, Any]], params: UnlearningParams) -> dict[str, Any]:
    models = [m for m in MODELS if any(m in v["correct"] for v in values)]
    counts = {split: sum(1 for v in values if v["split"] == split) for split in SPLITS}
    accuracy = {m: {s: _accuracy(values, m, s) for s in SPLITS} for m in models}
    summary: dict[str, Any] = {"n_samples": len(values), "counts": counts, "accuracy": accuracy}
    summary["membership"] = {m: _membership(values, m) for m in models}
    complete = all(
        accuracy.get(m, {}).get(s) is not None for m in ("unlearned", "retrained") for s in SPLITS
    )
    if complete:
        summary["tug_of_war"] = tug_of_war(accuracy["unlearned"], accuracy["retrained"])
        mia = summary["membership"]
        if mia["unlearned"]["svc_mia"] is not None and mia["retrained"]["svc_mia"] is not None:
            summary["tug_of_war_mia"] = tug_of_war_mia(
                accuracy["unlearned"],
                accuracy["retrained"],
                mia["unlearned"]["svc_mia"],
                mia["retrained"]["svc_mia"],
            )
    else:
        summary["tug_of_war"] = None
        summary["tug_of_war_reason"] = "needs retrained_model and forget, retain and test records"
    summary["stratified"] = _stratified(values, params, models)
    return summary


def _stratified(
    values: Sequence[dict[str, Any]], params: UnlearningParams, models: Sequence[str]
) -> dict[str, Any]:
    forget = [v for v in values if v["split"] == "forget" and v.get("stratify_score") is not None]
    per_level = min(params.rum_n_per_level, len(forget) // 3)
    if per_level < 1:
        return {"reason": "fewer than 3 scored forget records"}
    levels = rum_levels(
        [v["stratify_score"] for v in forget],
        per_level,
        mem_scores=params.stratify_by != "feldman_mem",
    )
    result: dict[str, Any] = {
        "by": params.stratify_by,
        "basis": forget[0]["stratify_basis"],
        "n_per_level": per_level,
        "order": list(levels),
        "levels": {},
    }
    for level, indices in levels.items():
        chosen = [forget[i] for i in indices]
        entry: dict[str, Any] = {
            "score_range": [
                min(v["stratify_score"] for v in chosen),
                max(v["stratify_score"] for v in chosen),
            ],
            "accuracy": {
                m: 100.0 * float(np.mean([v["correct"][m] for v in chosen])) for m in models
            },
        }
        if "retrained" in models:
            entry["gap_to_retrained"] = abs(
                entry["accuracy"]["unlearned"] - entry["accuracy"]["retrained"]
            )
        result["levels"][level] = entry
    return result
