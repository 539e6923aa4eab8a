"""How the `wilt` kind computes (METRICS.md §10): each record is one hidden rule, played as a clean
conversation with the audited chat model (a local causal LM through its chat template, or an
OpenAI-compatible endpoint), all rules of a batch in lockstep, one generation per turn.

A record's `rule` is a built-in id ("1"-"50", "L1"-"L10") or the user's own lambda in the guess
grammar; `memaudit wilt rules` writes the built-in sets as JSONL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.inspection.datasets import DatasetError, Record
from worker.checks.reasoning.kinds import WiltParams
from worker.checks.reasoning.passes import GenerationContext
from worker.engine.wilt_guess import InvalidGuess, parse_guess
from worker.engine.wilt_protocol import Conversation, run_conversations
from worker.engine.wilt_rules import Rule, rule_of

PER_RULE_LIMIT = 500  # summary entries; the rows hold every rule


def _rule(record: Record) -> Rule:
    value = record.data.get("rule")
    if not isinstance(value, str):
        raise DatasetError(record.line_no, "field 'rule' must be a rule id or a lambda")
    try:
        return rule_of(value, record.sample_id)
    except InvalidGuess as exc:
        raise DatasetError(record.line_no, f"rule: {exc}") from None


def compute(
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


def summarize(values: Sequence[dict[str, Any]], params: WiltParams) -> dict[str, Any]:
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
