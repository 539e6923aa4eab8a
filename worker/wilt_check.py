"""The `wilt` check kind (METRICS.md §10): each record is one hidden rule, played as a clean
conversation with the audited chat model (a local causal LM through its chat template, or an
OpenAI-compatible endpoint), all rules of a batch in lockstep, one generation per turn.

A record's `rule` is a built-in id ("1"-"50", "L1"-"L10") or the user's own lambda in the guess
grammar; `memaudit wilt rules` writes the built-in sets as JSONL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, model_validator

from worker.check_types import CheckKind, CheckParams, Metric, TableColumn, no_lm_plan
from worker.engine.wilt_guess import InvalidGuess, parse_guess
from worker.engine.wilt_protocol import Conversation, ProtocolParams, run_conversations
from worker.engine.wilt_rules import Rule, rule_of
from worker.generation_checks import GenerationContext
from worker.loaders.datasets import DatasetError, Record

PER_RULE_LIMIT = 500  # summary entries; the rows hold every rule


class WiltParams(CheckParams):
    max_tests: int = Field(30, ge=1, le=200)
    mulligans: int = Field(1, ge=0, le=5)
    max_turns: int = Field(35, ge=2, le=250)
    n_random: int = Field(10_000, ge=1, le=200_000)
    seed: int = Field(0, ge=0)
    eval_cpu_s: float = Field(5.0, gt=0, le=120)
    max_new_tokens: int = Field(1024, ge=16, le=16_384, description="per model turn")

    @model_validator(mode="after")
    def _room_to_guess(self) -> WiltParams:
        if self.max_turns <= self.max_tests:
            raise ValueError("max_turns must exceed max_tests, or no guess can follow the tests")
        return self

    def protocol(self) -> ProtocolParams:
        return ProtocolParams(
            max_tests=self.max_tests,
            mulligans=self.mulligans,
            max_turns=self.max_turns,
            n_random=self.n_random,
            seed=self.seed,
            eval_cpu_s=self.eval_cpu_s,
        )


def _rule(record: Record) -> Rule:
    value = record.data.get("rule")
    if not isinstance(value, str):
        raise DatasetError(record.line_no, "field 'rule' must be a rule id or a lambda")
    try:
        return rule_of(value, record.sample_id)
    except InvalidGuess as exc:
        raise DatasetError(record.line_no, f"rule: {exc}") from None


def _compute(
    context: GenerationContext, records: Sequence[Record], params: WiltParams
) -> list[dict[str, Any]]:
    if context.chat is None:
        raise ValueError("this model cannot hold a conversation")
    chat = context.chat
    rules = [_rule(r) for r in records]
    protocol = params.protocol()
    conversations = [Conversation(parse_guess(rule.text), protocol) for rule in rules]
    run_conversations(conversations, lambda batch: chat(batch, params.max_new_tokens))
    return [
        {
            "rule_id": rule.id,
            "family": rule.family,
            "rule": rule.text,
            **conversation.result(),
            "detail": {"transcript": conversation.messages},
        }
        for rule, conversation in zip(rules, conversations, strict=True)
    ]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _summarize(values: Sequence[dict[str, Any]], params: WiltParams) -> dict[str, Any]:
    by_family: dict[str, dict[str, Any]] = {}
    for v in values:
        entry = by_family.setdefault(v["family"], {"n": 0, "correct": 0})
        entry["n"] += 1
        entry["correct"] += int(v["correct"])
    for entry in by_family.values():
        entry["accuracy"] = entry["correct"] / entry["n"]
    outcomes: dict[str, int] = {}
    for v in values:
        key = "invalid" if v["outcome"] == "guessed" and not v["valid"] else v["outcome"]
        outcomes[key] = outcomes.get(key, 0) + 1
    wrong = [v["grid_agreement"] for v in values if v["valid"] and not v["correct"]]
    return {
        "n_rules": len(values),
        "accuracy": _mean([float(v["correct"]) for v in values]),
        "n_correct": sum(int(v["correct"]) for v in values),
        "mean_tests_used": _mean([v["tests_used"] for v in values]),
        "total_points": sum(v["points"] for v in values),
        "repeated_tests": sum(v["repeated_tests"] for v in values),
        "outcomes": outcomes,
        "by_family": by_family,
        "mean_grid_agreement_wrong": _mean([a for a in wrong if a is not None]),
        "max_tests": params.max_tests,
        "seed": params.seed,
        "per_rule": [
            {
                key: v[key]
                for key in (
                    "rule_id",
                    "family",
                    "correct",
                    "valid",
                    "outcome",
                    "tests_used",
                    "grid_agreement",
                    "points",
                )
            }
            for v in values
        ][:PER_RULE_LIMIT],
    }


WILT = CheckKind(
    name="wilt",
    description="WILT (Banatt et al. 2024): a memorization-robust inductive-logic benchmark; the "
    "model probes a hidden rule up to 30 times, then guesses it as a lambda.",
    params_model=WiltParams,
    model_kinds=("causal_lm", "chat_endpoint"),
    required_fields=("rule",),
    metrics=(
        Metric("correct", None, "bool", "The guess equals the rule on every test point."),
        Metric("points", None, "", "1000 + 100·(1 − tests/30) if correct, else the pity score."),
        Metric("tests_used", None, "", "Probes before the final guess."),
        Metric("grid_agreement", None, "ratio", "Share of the 41³ grid where the guess agrees."),
    ),
    plan=no_lm_plan,
    compute=_compute,
    summarize=_summarize,
    # Failed rules first: where the model's reasoning broke down.
    rank_score=lambda values, _p: 1.0 - float(values["correct"]),
    rank_description="unsolved rules first",
    table_columns=lambda _p: [
        TableColumn("correct", "solved", "bool"),
        TableColumn("points", "points", "int"),
        TableColumn("tests_used", "tests", "int"),
        TableColumn("grid_agreement", "grid agreement", "percent"),
    ],
    family="generate",
)
