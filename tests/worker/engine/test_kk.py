"""METRICS.md §6 validation facts: the Knights-and-Knaves generator, perturbations, judge, LiMem."""

from __future__ import annotations

import pytest

from worker.engine.reasoning.kk_judge import gold_conditions, judge, limem
from worker.engine.reasoning.kk_logic import holds, solutions
from worker.engine.reasoning.kk_puzzles import (
    MATH_LEVEL,
    PERTURBATIONS,
    generate_puzzles,
    perturb,
)


@pytest.mark.parametrize("n_people", range(2, 9))
def test_every_puzzle_has_exactly_one_solution(n_people: int) -> None:
    puzzles = generate_puzzles(n_people, 15)
    assert len({p.statements for p in puzzles}) == 15  # no duplicate puzzles
    for puzzle in puzzles:
        assert solutions(puzzle.statements) == [puzzle.solution]
        for i, statement in enumerate(puzzle.statements):
            assert holds(statement, puzzle.solution) == puzzle.solution[i]
            assert statement != ("lying", i)  # no "I am lying"


def test_generation_is_deterministic_for_a_seed() -> None:
    first = [p.to_record() for p in generate_puzzles(4, 10, seed=7)]
    assert first == [p.to_record() for p in generate_puzzles(4, 10, seed=7)]
    assert first != [p.to_record() for p in generate_puzzles(4, 10, seed=8)]
    again = [perturb(p, "perturbed_leaf", 7) for p in generate_puzzles(4, 10, seed=7)]
    assert again == [perturb(p, "perturbed_leaf", 7) for p in generate_puzzles(4, 10, seed=7)]


@pytest.mark.parametrize("kind", PERTURBATIONS)
def test_math_level_changes_the_answer_and_language_level_keeps_it(kind: str) -> None:
    made = 0
    for puzzle in generate_puzzles(3, 30):
        changed = perturb(puzzle, kind, 1234)
        if changed is None:
            assert kind in MATH_LEVEL or kind == "reorder_statement"
            continue
        made += 1
        assert solutions(changed.statements) == [changed.solution]
        if kind in MATH_LEVEL:
            assert changed.solution != puzzle.solution
        else:
            assert changed.solution == puzzle.solution and changed.statements == puzzle.statements
            assert changed.quiz() != puzzle.quiz()
    assert made >= 20


def test_flipped_roles_and_new_pairs_reword_the_answer() -> None:
    puzzle = generate_puzzles(2, 1)[0]
    flipped = perturb(puzzle, "flip_role", 1)
    assert flipped.roles == ("knave", "knight")
    assert "Knaves always tell the truth" in flipped.quiz()
    paired = perturb(puzzle, "random_pair", 1)
    assert paired.roles != puzzle.roles and paired.roles[0] in paired.solution_text()


def test_the_judge_example() -> None:
    gold = "Emma is a knight, and Liam is a knave."
    assert gold_conditions(gold) == ["Emma is a knight", "Liam is a knave"]
    names = ("Emma", "Liam")
    right = judge("CONCLUSION: (1) Emma is a knight (2) Liam is a knave", gold, 2, names)
    assert right.correct and right.correct_ratio == 1.0 and right.strict_correct
    beyond = judge("CONCLUSION: (1) Emma is a knight (2) Liam is a knave (3) Bob", gold, 2, names)
    assert not beyond.correct and beyond.wrong_reason == "beyond_list"
    half = judge("CONCLUSION: (1) Emma is a knight", gold, 2, names)
    assert half.correct_ratio == 0.5 and half.wrong_reason == "wrong_identity"
    assert judge("I think so.", gold, 2).wrong_reason == "no_conclusion_matched"
    # The raw "if" test fires inside longer words, as in the reference.
    assert (
        judge(
            "CONCLUSION: (1) Emma is a knight, clearly, (2) Liam is a knave, life", gold, 2
        ).wrong_reason
        == "contain_if"
    )
    # The reference's substring rule accepts a double assignment; strict_correct does not.
    both = judge(
        "CONCLUSION: (1) Emma is a knight (2) Liam is a knave; Emma is a knave", gold, 2, names
    )
    assert both.correct and not both.strict_correct
    # Only what precedes the next question is judged.
    assert judge(
        "CONCLUSION: (1) Emma is a knight (2) Liam is a knave ### Question: (3)", gold, 2
    ).correct


def test_limem_example() -> None:
    # Acc 0.9 with 90 solved, 60 of which survive: CR = 2/3, LiMem = 0.9 × 1/3 = 0.30.
    original = [True] * 90 + [False] * 10
    perturbed = [True] * 60 + [False] * 30 + [True] * 10
    result = limem(original, perturbed)
    assert result.n == 100 and result.accuracy == 0.9
    assert result.consistency == pytest.approx(2 / 3) and result.limem == pytest.approx(0.30)
    assert limem([False, False], [True, False]).limem == 0.0
    assert limem([False, False], [True, False]).consistency is None
    # Puzzles without a valid perturbation are left out of D_π.
    assert limem([True, True], [None, True]).n == 1


def test_puzzle_sets_and_the_generate_command(tmp_path) -> None:
    import json

    from app.cli import main
    from worker.engine.reasoning.kk_sets import prompt, puzzle_records

    records = list(puzzle_records([2, 3], n_test=3, n_train=4))
    assert [r["split"] for r in records[:7]] == ["test"] * 3 + ["train"] * 4
    assert {r["n_people"] for r in records} == {2, 3} and len(records) == 14
    for record in records:
        assert set(record["perturbations"]) == set(PERTURBATIONS)
        original = judge(
            record["answer"], record["solution_text"], record["n_people"], record["names"]
        )
        assert original.correct and original.strict_correct  # the training target is judged right
        for kind, changed in record["perturbations"].items():
            if changed is not None and kind in MATH_LEVEL:
                assert changed["solution"] != record["solution"]
    assert prompt("Q?") == "### Question: Q?\n### Answer:"
    output = tmp_path / "kk.jsonl"
    assert (
        main(
            [
                "kk",
                "generate",
                "--people",
                "2",
                "--test",
                "3",
                "--train",
                "4",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert written == [json.loads(json.dumps(r)) for r in records[:7]]
