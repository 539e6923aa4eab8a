"""How `retention` computes: each factoid asked of every version in the chain, graded, and
where along the chain it was lost."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from core.inspection.datasets import DatasetError, Record
from worker.checks.reasoning.kinds import RetentionParams
from worker.checks.reasoning.passes import GenerationContext
from worker.engine.retention import (
    comparison_for,
    grade,
    kept_share,
    lost_at,
    retention_between,
    transition,
)


def _chain(params: RetentionParams) -> list[str]:
    return [f"v{i}" for i in range(len(params.versions) + 1)]


def compute(
    context: GenerationContext, records: Sequence[Record], params: RetentionParams
) -> list[dict[str, Any]]:
    for record in records:
        for name in ("question", "answer"):
            if not isinstance(record.data.get(name), str):
                raise DatasetError(record.line_no, f"field {name!r} must be a string")
    questions = [r.data["question"] for r in records]
    labels = _chain(params)
    generators = [context.version(uri) for uri in params.versions] + [context.generate]
    answers = {
        label: generate(questions, params.max_new_tokens, params.chat_template)
        for label, generate in zip(labels, generators, strict=True)
    }
    rows = []
    for i, record in enumerate(records):
        rule = params.comparison
        if rule == "auto":
            rule = comparison_for(record.data.get("dataset"))
        correct = {label: grade(answers[label][i], record.data["answer"], rule) for label in labels}
        rows.append(
            {
                "id": record.sample_id,
                "comparison": rule,
                "correct": correct,
                "transition": transition(correct[labels[0]], correct[labels[-1]]),
                "lost_at": lost_at(correct, labels),
                "detail": {"predictions": {label: answers[label][i][:500] for label in labels}},
            }
        )
    return rows


def summarize(values: Sequence[dict[str, Any]], params: RetentionParams) -> dict[str, Any]:
    labels = _chain(params)
    correct = [v["correct"] for v in values]
    uris = [*params.versions, "(audited model)"]
    summary: dict[str, Any] = {
        "versions": [{"label": label, "uri": uri} for label, uri in zip(labels, uris, strict=True)],
        "accuracy": {
            label: sum(c[label] for c in correct) / len(correct) if correct else None
            for label in labels
        },
        "from_reference": {
            label: retention_between(correct, labels[0], label) for label in labels[1:]
        },
        "consecutive": {f"{a}->{b}": retention_between(correct, a, b) for a, b in pairwise(labels)},
        # Row a, column b: of the factoids version a answered, the share version b answers.
        "matrix": [[kept_share(correct, a, b) if a != b else None for b in labels] for a in labels],
        "forgotten": [
            {"id": v["id"], "lost_at": v["lost_at"]} for v in values if v["lost_at"] is not None
        ][:500],
    }
    return summary
