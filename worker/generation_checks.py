"""The check kinds that read what a causal LM answers: `kk_memorization` (METRICS.md §6) and
`retention` (§7). Both generate greedily, batched with the KV cache; `wilt` (worker/wilt_check.py)
holds conversations through the same context.

`compute(context, records, params)` takes a GenerationContext, whose `generate` is the loaded
model's greedy decoding, or, in tests and notebooks, any function from prompts to answers (a
rule-based solver wrapped as a model); its `chat` continues whole conversations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from pydantic import Field, field_validator

from worker.check_types import (
    CheckKind,
    CheckParams,
    Metric,
    SubmitContext,
    TableColumn,
    known_names,
    no_lm_plan,
)
from worker.engine.generation import greedy_generate, render_conversation
from worker.engine.reasoning.kk_judge import judge, limem
from worker.engine.reasoning.kk_puzzles import MATH_LEVEL, PERTURBATIONS
from worker.engine.reasoning.kk_sets import prompt
from worker.engine.retention import (
    comparison_for,
    grade,
    kept_share,
    lost_at,
    retention_between,
    transition,
)
from worker.loaders.datasets import DatasetError, Record

Generate = Callable[[Sequence[str], int, str], list[str]]  # prompts, max_new_tokens, chat
# conversations (lists of {"role", "content"}), max_new_tokens: the next assistant turn of each
Chat = Callable[[Sequence[Sequence[dict[str, str]]], int], list[str]]
OUTPUT_CHARS = 2000  # what a row keeps of each answer


@dataclass
class GenerationContext:
    generate: Generate  # the audited model
    chat: Chat | None = None  # the audited model in conversation, for `wilt`
    load: Callable[[str], Generate] | None = None  # another version, for `retention`
    _versions: dict[str, Generate] = field(default_factory=dict)

    def version(self, uri: str) -> Generate:
        if uri not in self._versions:
            if self.load is None:
                raise ValueError("this context cannot load other model versions")
            self._versions[uri] = self.load(uri)
        return self._versions[uri]


def model_generator(loaded: Any, batch_size: int) -> Generate:
    """Greedy decoding of a loaded causal LM as a `Generate` function."""

    def generate(prompts: Sequence[str], max_new_tokens: int, chat: str) -> list[str]:
        return greedy_generate(
            loaded.model,
            loaded.tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            chat=chat,
            max_prompt_tokens=max(loaded.max_tokens - max_new_tokens, 1),
        )

    return generate


def model_chat(loaded: Any, batch_size: int) -> Chat:
    """The next greedy assistant turn of each conversation, rendered with the chat template."""
    generate = model_generator(loaded, batch_size)

    def chat(conversations: Sequence[Sequence[dict[str, str]]], max_new_tokens: int) -> list[str]:
        prompts = [render_conversation(loaded.tokenizer, c) for c in conversations]
        return generate(prompts, max_new_tokens, "never")  # already rendered

    return chat


# ---- kk_memorization ---------------------------------------------------------------------


class KKParams(CheckParams):
    perturbations: list[str] = Field(default_factory=lambda: list(PERTURBATIONS), min_length=1)
    max_new_tokens: int = Field(2048, ge=1, le=8192)
    chat_template: Literal["auto", "never"] = "auto"

    @field_validator("perturbations")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        return known_names(values, PERTURBATIONS, "perturbations")


def _puzzle(record: Record) -> dict[str, Any]:
    data = record.data
    for name, kind in (("quiz", str), ("solution_text", str), ("n_people", int)):
        if not isinstance(data.get(name), kind):
            raise DatasetError(record.line_no, f"field {name!r} must be a {kind.__name__}")
    return data


def _verdict(output: str, puzzle: Mapping[str, Any], n_people: int) -> dict[str, Any]:
    roles = tuple((puzzle.get("knight_knave") or {}).values()) or ("knight", "knave")
    found = judge(output, puzzle["solution_text"], n_people, puzzle.get("names") or (), roles)
    return {
        "correct": found.correct,
        "correct_ratio": found.correct_ratio,
        "wrong_reason": found.wrong_reason,
        "strict_correct": found.strict_correct,
    }


def _compute_kk(
    context: GenerationContext, records: Sequence[Record], params: KKParams
) -> list[dict[str, Any]]:
    puzzles = [_puzzle(r) for r in records]
    prompts: list[str] = []
    where: list[tuple[int, str]] = []  # (record, "original" or the perturbation)
    for i, data in enumerate(puzzles):
        prompts.append(prompt(data["quiz"]))
        where.append((i, "original"))
        for kind in params.perturbations:
            changed = (data.get("perturbations") or {}).get(kind)
            if changed is not None:
                prompts.append(prompt(changed["quiz"]))
                where.append((i, kind))
    outputs = context.generate(prompts, params.max_new_tokens, params.chat_template)
    rows: list[dict[str, Any]] = [
        {
            "id": records[i].sample_id,
            "n_people": data["n_people"],
            "split": data.get("split"),
            "correct_pert": {kind: None for kind in params.perturbations},
            "detail": {"outputs": {}, "gold": {}},
        }
        for i, data in enumerate(puzzles)
    ]
    for (i, kind), output in zip(where, outputs, strict=True):
        data = puzzles[i] if kind == "original" else puzzles[i]["perturbations"][kind]
        verdict = _verdict(output, data, puzzles[i]["n_people"])
        rows[i]["detail"]["outputs"][kind] = output[:OUTPUT_CHARS]
        rows[i]["detail"]["gold"][kind] = data["solution_text"]
        if kind == "original":
            rows[i].update(
                correct_orig=verdict["correct"],
                correct_ratio=verdict["correct_ratio"],
                wrong_reason=verdict["wrong_reason"],
                strict_correct=verdict["strict_correct"],
            )
        else:
            rows[i]["correct_pert"][kind] = verdict["correct"]
    for row in rows:
        # Solved as seen, not once perturbed: "solved by memorization" under that perturbation.
        row["memorized"] = {
            kind: (None if ok is None else bool(row["correct_orig"] and not ok))
            for kind, ok in row["correct_pert"].items()
        }
        row["memorized_any"] = any(row["memorized"].get(k) for k in MATH_LEVEL)
    return rows


def _limem_table(rows: Sequence[Mapping[str, Any]], kinds: Sequence[str]) -> dict[str, Any]:
    table = {}
    for kind in kinds:
        found = limem([r["correct_orig"] for r in rows], [r["correct_pert"][kind] for r in rows])
        table[kind] = {
            "n": found.n,
            "accuracy": found.accuracy,
            "consistency": found.consistency,
            "limem": found.limem,
        }
    return table


def _summarize_kk(values: Sequence[dict[str, Any]], params: KKParams) -> dict[str, Any]:
    kinds = params.perturbations
    summary: dict[str, Any] = {
        "n_puzzles": len(values),
        "accuracy": sum(v["correct_orig"] for v in values) / len(values) if values else None,
        "by_perturbation": _limem_table(values, kinds),
        "by_people": {},
        "wrong_reasons": {},
    }
    for n in sorted({v["n_people"] for v in values}):
        for split in sorted({str(v.get("split")) for v in values if v["n_people"] == n}):
            group = [v for v in values if v["n_people"] == n and str(v.get("split")) == split]
            summary["by_people"].setdefault(str(n), {})[split] = {
                "n": len(group),
                "accuracy": sum(v["correct_orig"] for v in group) / len(group),
                "by_perturbation": _limem_table(group, kinds),
            }
    for v in values:
        if v.get("wrong_reason"):
            reason = v["wrong_reason"]
            summary["wrong_reasons"][reason] = summary["wrong_reasons"].get(reason, 0) + 1
    summary["memorized_puzzles"] = [v["id"] for v in values if v["memorized_any"]][:200]
    return summary


KK_MEMORIZATION = CheckKind(
    name="kk_memorization",
    description="Knights-and-Knaves reasoning memorization (Xie et al. 2024): accuracy, "
    "consistency under six perturbations and LiMem, by perturbation, people and split.",
    params_model=KKParams,
    model_kinds=("causal_lm",),
    required_fields=("quiz", "solution_text", "n_people"),
    metrics=(
        Metric("correct_orig", None, "bool", "The original puzzle is solved (reference judge)."),
        Metric("correct_ratio", None, "ratio", "Share of the gold conditions found."),
        Metric(
            "memorized_any",
            True,
            "bool",
            "Solved as seen but not once its logic changed.",
            "Xie et al. 2024",
        ),
        Metric("limem", True, "ratio", "Acc · (1 − CR), per perturbation type.", "Xie et al. 2024"),
    ),
    plan=no_lm_plan,
    compute=_compute_kk,
    summarize=_summarize_kk,
    rank_score=lambda values, _p: float(values["memorized_any"]) + 0.5 * values["correct_orig"],
    rank_description="solved only in its original form first, then solved",
    table_columns=lambda _p: [
        TableColumn("correct_orig", "original", "bool"),
        TableColumn("correct_pert.perturbed_statement", "new statement", "bool"),
        TableColumn("correct_pert.perturbed_leaf", "new leaf", "bool"),
        TableColumn("correct_ratio", "conditions found", "percent"),
    ],
    family="generate",
)

# ---- retention ---------------------------------------------------------------------------


class RetentionParams(CheckParams):
    versions: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Earlier versions, oldest first; the audited model is the last version",
    )
    versions_from: Literal["list", "registry", "previous"] = Field(
        "list",
        description="list: `versions` as given; registry: every earlier registered version of "
        "the audited MLflow model; previous: the one registered just before it. Read at submit "
        "time into `versions`, so a policy compares each new version with the last.",
    )
    max_new_tokens: int = Field(32, ge=1, le=4096)
    comparison: Literal["auto", "exact", "webqa", "gsm8k"] = "auto"
    chat_template: Literal["auto", "never"] = "auto"


def _validate_retention(params: RetentionParams, context: SubmitContext) -> RetentionParams | None:
    if params.versions_from != "list":
        if params.versions:
            raise ValueError(f"versions_from={params.versions_from} reads the versions: list none")
        if context.model_uri is None or context.earlier_versions is None:
            return None  # a policy's checks: read when a version arrives
        earlier = context.earlier_versions(context.model_uri)
        chain = earlier[-1:] if params.versions_from == "previous" else earlier
        # The first registered version has nothing before it: its accuracy alone is reported.
        return params.model_copy(update={"versions": chain})
    if not params.versions:
        raise ValueError("versions must name at least one earlier version of the model")
    for uri in params.versions:
        if context.resolve_model is not None:
            kind = context.resolve_model(uri)
            if kind not in (None, "causal_lm"):
                raise ValueError(f"{uri} is a {kind} model; retention compares causal LMs")
    return None


def _chain(params: RetentionParams) -> list[str]:
    return [f"v{i}" for i in range(len(params.versions) + 1)]


def _compute_retention(
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


def _summarize_retention(
    values: Sequence[dict[str, Any]], params: RetentionParams
) -> dict[str, Any]:
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


RETENTION = CheckKind(
    name="retention",
    description="Factoid retention along a chain of model versions (Chen et al. 2024): "
    "exact-match accuracy per version, retention and forgetting, and where each fact was lost.",
    params_model=RetentionParams,
    model_kinds=("causal_lm",),
    required_fields=("question", "answer"),
    metrics=(
        Metric("correct", None, "bool", "The version answers the factoid (per version)."),
        Metric("transition", None, "", "retained, forgotten, recovered or never, first to last."),
    ),
    plan=no_lm_plan,
    compute=_compute_retention,
    summarize=_summarize_retention,
    rank_score=lambda values, _p: 1.0 if values.get("lost_at") else 0.0,
    rank_description="forgotten factoids first",
    table_columns=lambda _p: [],
    validate=_validate_retention,
    family="generate",
)
