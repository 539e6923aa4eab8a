"""Puzzle sets as records: each puzzle with its split and every perturbation of it, the format
`kk_memorization` audits and `memaudit kk generate` writes for fine-tuning.

Per number of people the first `n_test` puzzles are the test split and the next `n_train` the
train split (200 at 2 people, 1000 above, as in the reference data).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from worker.engine.reasoning.kk_puzzles import PERTURBATIONS, Puzzle, generate_puzzles, perturb

PROMPT = "### Question: {quiz}\n### Answer:"


def default_n_train(n_people: int) -> int:
    return 200 if n_people == 2 else 1000


def prompt(quiz: str) -> str:
    return PROMPT.format(quiz=quiz)


def _fields(puzzle: Puzzle) -> dict[str, Any]:
    record = puzzle.to_record()
    # What a fine-tune learns to answer: the conclusion in the judged format.
    record["answer"] = "CONCLUSION:\n" + record["solution_text_format"]
    return record


def puzzle_records(
    people: Sequence[int],
    *,
    n_test: int = 100,
    n_train: int | None = None,
    depth: int = 2,
    width: int = 2,
    seed: int = 1234,
    perturbations: Sequence[str] = PERTURBATIONS,
) -> Iterator[dict[str, Any]]:
    """One record per puzzle, its perturbed versions under `perturbations` (None where the
    generator has no valid one)."""
    for n_people in people:
        train = default_n_train(n_people) if n_train is None else n_train
        for puzzle in generate_puzzles(
            n_people, n_test + train, depth=depth, width=width, seed=seed
        ):
            record = {
                "id": f"kk-{n_people}-{puzzle.index}",
                "n_people": n_people,
                "split": "test" if puzzle.index < n_test else "train",
                **_fields(puzzle),
                "perturbations": {},
            }
            for kind in perturbations:
                changed = perturb(puzzle, kind, seed, depth, width)
                record["perturbations"][kind] = None if changed is None else _fields(changed)
            yield record
