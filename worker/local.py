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

from worker.checks import SubmitContext, parse_checks
from worker.engine.scoring import plan_batches
from worker.lm_passes import TextRecord, audit_plan, compute_batch
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
