"""Judging a model's answer to a puzzle, as the reference evaluation does, plus a strict reading
(METRICS.md §6), and LiMem from original and perturbed outcomes.

>>> judge("CONCLUSION: (1) Emma is a knight (2) Liam is a knave",
...       "Emma is a knight, and Liam is a knave.", 2).correct
True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from worker.engine.reasoning.kk_puzzles import article

FINISH_MARKERS = ("### Reason", "###", "<|im_end|>", "</s>")


@dataclass(frozen=True)
class Judgement:
    correct: bool
    correct_ratio: float
    wrong_reason: str | None  # beyond_list | contain_if | wrong_identity | no_conclusion_matched
    strict_correct: bool = False


def gold_conditions(solution_text: str) -> list[str]:
    text = solution_text.replace(" and ", "").replace(".", "")
    return [part.strip() for part in text.split(",") if part.strip()]


def _judged_text(output: str, n_people: int) -> str | None:
    text = output.split("### Question")[0]
    if "CONCLUSION:" in text and text.split("CONCLUSION:", 1)[1].strip():
        text = text.split("CONCLUSION:", 1)[1]
    elif not all(f"({i})" in text for i in range(1, n_people + 1)):
        return None
    for marker in FINISH_MARKERS:
        text = text.split(marker)[0]
    return text


def judge(
    output: str,
    solution_text: str,
    n_people: int,
    names: Sequence[str] = (),
    roles: Sequence[str] = ("knight", "knave"),
) -> Judgement:
    text = _judged_text(output, n_people)
    if text is None:
        return Judgement(False, 0.0, "no_conclusion_matched")
    gold = gold_conditions(solution_text)
    found = [condition in text for condition in gold]
    ratio = sum(found) / len(gold) if gold else 0.0
    if f"({n_people + 1})" in text:
        reason = "beyond_list"
    elif "if" in text:  # a raw substring test, as the reference has it
        reason = "contain_if"
    elif not all(found):
        reason = "wrong_identity"
    else:
        reason = None
    return Judgement(reason is None, ratio, reason, _strict(text, gold, names, roles))


def _strict(text: str, gold: Sequence[str], names: Sequence[str], roles: Sequence[str]) -> bool:
    """Every person assigned exactly once, and as the gold answer says."""
    if not names:
        return False
    pattern = "|".join(re.escape(role) for role in roles)
    for name in names:
        said = re.findall(rf"\b{re.escape(name)} is an? ({pattern})\b", text)
        if len(said) != 1 or f"{name} is {article(said[0])}" not in gold:
            return False
    return True


@dataclass(frozen=True)
class LiMem:
    n: int  # |D_π|: puzzles with a valid perturbation
    accuracy: float | None
    consistency: float | None  # CR; None when nothing was solved
    limem: float


def limem(original: Sequence[bool], perturbed: Sequence[bool | None]) -> LiMem:
    """LiMem = Acc · (1 − CR) over the puzzles that have this perturbation (perturbed not None);
    CR = solved before and after / solved before."""
    pairs = [(o, p) for o, p in zip(original, perturbed, strict=True) if p is not None]
    if not pairs:
        return LiMem(0, None, None, 0.0)
    solved = [p for o, p in pairs if o]
    accuracy = len(solved) / len(pairs)
    if not solved:
        return LiMem(len(pairs), accuracy, None, 0.0)
    consistency = sum(solved) / len(solved)
    return LiMem(len(pairs), accuracy, consistency, accuracy * (1 - consistency))
