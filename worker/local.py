"""Audits without the service: the same checks and passes, called from Python or the CLI.

>>> from worker.local import audit_texts  # doctest: +SKIP
>>> result = audit_texts("/models/gpt2", [{"text": "...", "member": True}],
...                      [{"kind": "extraction", "params": {"suffix_tokens": 32}}])
>>> result["extraction"]["summary"]["all"]["greedy_rate"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from worker.check_types import SubmitContext
from worker.checks import parse_checks
from worker.classifier_passes import ClassifierContext, labelled
from worker.engine.scoring import plan_batches
from worker.lm_passes import TextRecord, audit_plan, compute_batch
from worker.loaders.classifiers import LoadedClassifier, cached_classifier
from worker.loaders.datasets import iter_records
from worker.loaders.models import LoadedModel, cached_causal_lm, resolve_model


def load_local(path: str | Path) -> LoadedModel:
    """Load a local model directory (no roots apply: the caller owns this process)."""
    resolved = Path(path).resolve()
    return cached_causal_lm(resolve_model(f"path:{resolved}", [resolved.parent]))


def audit_texts(
    model: str | Path | LoadedModel,
    records: Iterable[Mapping[str, Any]],
    checks: Iterable[Mapping[str, Any]],
    *,
    reference_model: str | Path | LoadedModel | None = None,
    batch_size: int = 16,
) -> dict[str, dict[str, Any]]:
    """Per check: per-sample values (in input order) and the summary."""
    target = model if isinstance(model, LoadedModel) else load_local(model)
    reference = (
        reference_model
        if isinstance(reference_model, LoadedModel | None)
        else load_local(reference_model)
    )
    parsed = parse_checks(list(checks))
    for kind, params in parsed:
        kind.validate(params, SubmitContext(has_reference_model=reference is not None))
    plan, max_tokens = audit_plan(parsed, target, reference is not None)
    items = [
        TextRecord(str(r.get("id", i)), r["text"], r.get("member"), r.get("duplicates"))
        for i, r in enumerate(records)
    ]
    per_check: list[list[dict[str, Any] | None]] = [[None] * len(items) for _ in parsed]
    for batch in plan_batches([len(item.text) for item in items], batch_size):
        values, _ = compute_batch(
            [items[i] for i in batch], parsed, plan, target, reference, max_tokens, batch_size
        )
        for check_index, per_sample in enumerate(values):
            for i, sample_values in zip(batch, per_sample, strict=True):
                per_check[check_index][i] = sample_values
    return {
        kind.name: {"samples": per_check[n], "summary": kind.summarize(per_check[n], params)}
        for n, (kind, params) in enumerate(parsed)
    }


def load_local_classifier(path: str | Path) -> LoadedClassifier:
    """A local classifier, encoder or (for `diversity`) causal LM directory."""
    resolved = Path(path).resolve()
    return cached_classifier(resolve_model(f"path:{resolved}", [resolved.parent]))


def audit_records(
    model: str | Path | LoadedClassifier,
    dataset: str | Path,
    checks: Iterable[Mapping[str, Any]],
    *,
    batch_size: int = 64,
) -> dict[str, dict[str, Any]]:
    """The classifier checks over a JSONL or .npz file: per check, the per-sample values (in
    file order), the summary and, where the check has them, the model facts under "model"."""
    loaded = model if isinstance(model, LoadedClassifier) else load_local_classifier(model)
    parsed = parse_checks(list(checks))
    path = Path(dataset)
    need_label = any("label" in kind.required_fields for kind, _ in parsed)
    records = [labelled(r, loaded.input_kind, need_label) for r in iter_records(path)]
    context = ClassifierContext(
        loaded,
        path,
        batch_size,
        n_records=len(records),
        load_model=lambda uri: load_local_classifier(uri.removeprefix("path:")),
    )
    result = {}
    for kind, params in parsed:
        if kind.family != "classifier":
            raise ValueError(f"{kind.name} is an LM check: use audit_texts")
        samples = kind.compute(context, records, params)
        summary = kind.summarize(samples, params)
        if kind.model_facts is not None:
            summary["model"] = kind.model_facts(context, params)
        if kind.exemplars is not None:
            wanted = set(kind.exemplars(summary))
            summary["exemplars"] = {
                s["id"]: s["detail"] for s in samples if s.get("detail") and s["id"] in wanted
            }
        result[kind.name] = {"samples": samples, "summary": summary}
    return result
