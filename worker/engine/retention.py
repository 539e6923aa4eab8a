"""Factoid retention across model versions (METRICS.md §7; Chen et al. 2024): grading a greedy
answer against the gold one, and what each version kept, lost or gained.

>>> grade(" Paris", "paris"), grade("Paris.", "paris")
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

COMPARISONS = ("exact", "webqa", "gsm8k")
TRANSITIONS = {
    (True, True): "retained",
    (True, False): "forgotten",
    (False, True): "recovered",
    (False, False): "never",
}


def comparison_for(dataset: str | None) -> str:
    """`auto` picks the rule from the record's dataset: WebQA containment, GSM8K numbers."""
    name = (dataset or "").lower()
    if "webqa" in name:
        return "webqa"
    if "gsm8k" in name:
        return "gsm8k"
    return "exact"


def _last_number(text: str) -> str | None:
    found = re.findall(r"\d+", text)
    return found[-1] if found else None


def grade(prediction: str, gold: str, comparison: str = "exact") -> bool:
    """Exact match after strip and lower-casing (punctuation kept); WebQA: the prediction inside
    the gold answer, an empty one never; GSM8K: the last run of digits on each side."""
    if comparison not in COMPARISONS:
        raise ValueError(f"comparison must be one of {COMPARISONS}")
    pred, ref = prediction.strip().lower(), gold.strip().lower()
    if comparison == "webqa":
        return bool(pred) and pred in ref
    if comparison == "gsm8k":
        number = _last_number(pred)
        return number is not None and number == _last_number(ref)
    return pred == ref


def transition(before: bool, after: bool) -> str:
    return TRANSITIONS[(bool(before), bool(after))]


def retention_between(
    correct: Sequence[Mapping[str, bool]], before: str, after: str
) -> dict[str, Any]:
    """Accuracy of both versions, retention (accuracy of `after` on the set), forgetting in
    points, and counts per transition, over the factoids graded on both."""
    pairs = [(c[before], c[after]) for c in correct if before in c and after in c]
    if not pairs:
        return {"n": 0, "retention": None, "forgetting_pp": None, "transitions": {}}
    acc_before = sum(b for b, _ in pairs) / len(pairs)
    acc_after = sum(a for _, a in pairs) / len(pairs)
    counts = {name: 0 for name in TRANSITIONS.values()}
    for b, a in pairs:
        counts[transition(b, a)] += 1
    return {
        "n": len(pairs),
        "accuracy_before": acc_before,
        "accuracy_after": acc_after,
        "retention": acc_after,
        "forgetting_pp": 100 * (acc_before - acc_after),
        "transitions": counts,
    }


def lost_at(correct: Mapping[str, bool], versions: Sequence[str]) -> str | None:
    """The first version in the chain where a factoid known before is no longer known."""
    for previous, current in pairwise(versions):
        if correct.get(previous) and correct.get(current) is False:
            return current
    return None


def kept_share(correct: Sequence[Mapping[str, bool]], before: str, after: str) -> float | None:
    """Of the factoids `before` answered, the share `after` answers; None if it knew none."""
    known = [c for c in correct if c.get(before)]
    return sum(bool(c.get(after)) for c in known) / len(known) if known else None
