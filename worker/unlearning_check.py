"""The `unlearning` check kind: how close an unlearned classifier comes to one retrained
without the forget set (METRICS.md §5; Zhao & Triantafillou 2024).

The audited model is the unlearned one (θ_u). `original_model` (before unlearning) and
`retrained_model` (θ_r, trained from scratch without the forget set) are optional URIs, checked
against the model roots at submit time like the audited model. Records carry `split`
(`forget`, `retain` or `test`) and `label`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from worker.check_types import (
    CheckKind,
    CheckParams,
    Metric,
    SubmitContext,
    TableColumn,
    no_lm_plan,
)
from worker.classifier_passes import ClassifierContext, LabelledRecord
from worker.engine.proxies import auroc, mem_score, prediction_proxies, rum_levels
from worker.engine.unlearning import SPLITS, mia_features, svc_mia, tug_of_war, tug_of_war_mia
from worker.loaders.datasets import DatasetError

MODELS = ("unlearned", "original", "retrained")
STRATIFY_PROXIES = ("confidence", "max_conf", "neg_entropy", "bi_acc", "margin", "loss")


class UnlearningParams(CheckParams):
    original_model: str | None = Field(
        None, max_length=2048, description="The model before unlearning (path: or registry URI)"
    )
    retrained_model: str | None = Field(
        None,
        max_length=2048,
        description="θ_r, retrained from scratch without the forget set: needed for Tug-of-War",
    )
    stratify_by: str = Field(
        "confidence",
        description="Proxy (on the original model, else the unlearned one) that splits the "
        "forget set into low/mid/high memorization; `feldman_mem` reads that field",
    )
    rum_n_per_level: int = Field(
        1000, ge=1, le=1_000_000, description="Per level; fewer when the forget set is smaller"
    )

    @field_validator("stratify_by")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in (*STRATIFY_PROXIES, "feldman_mem"):
            raise ValueError(f"stratify_by must be one of {[*STRATIFY_PROXIES, 'feldman_mem']}")
        return value


def _validate(params: UnlearningParams, context: SubmitContext) -> None:
    for uri in (params.original_model, params.retrained_model):
        if uri is not None and context.resolve_model is not None:
            kind = context.resolve_model(uri)
            if kind not in (None, "classifier"):
                raise ValueError(f"{uri} is a {kind} model; unlearning compares classifiers")


def _split(record: LabelledRecord) -> str:
    if record.split not in SPLITS:
        raise DatasetError(record.line_no, f"field 'split' must be one of {list(SPLITS)}")
    return record.split


def _compute(
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
        scores = [r["confidence"][model] for r in forget + test]
        result["forget_vs_test_auc"] = auroc(scores, [True] * len(forget) + [False] * len(test))
    if forget and test and any(r["split"] == "retain" for r in rows):
        result["svc_mia"] = svc_mia(
            _features(rows, model, "retain"),
            _features(rows, model, "test"),
            _features(rows, model, "forget"),
        )
    return result


def _summarize(values: Sequence[dict[str, Any]], params: UnlearningParams) -> dict[str, Any]:
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


UNLEARNING = CheckKind(
    name="unlearning",
    description="An unlearned classifier against the original and a retrained model: forget / "
    "retain / test accuracy, Tug-of-War, membership attacks on the forget set, and the forget "
    "set split by memorization level.",
    params_model=UnlearningParams,
    model_kinds=("classifier",),
    required_fields=("label", "split"),
    metrics=(
        Metric("correct", None, "bool", "The model predicts the record's label (per model)."),
        Metric("confidence", False, "probability", "p(y|x) under each model."),
        Metric("stratify_score", True, "", "mem_score of the stratifying proxy."),
    ),
    plan=no_lm_plan,
    compute=_compute,
    summarize=_summarize,
    rank_score=lambda values, _p: values.get("stratify_score"),
    rank_description="most memorized first by the stratifying proxy",
    table_columns=lambda _p: [
        TableColumn("correct.unlearned", "unlearned correct", "bool"),
        TableColumn("correct.original", "original correct", "bool"),
        TableColumn("correct.retrained", "retrained correct", "bool"),
        TableColumn("stratify_score", "memorization", "number"),
    ],
    validate=_validate,
    family="classifier",
)
