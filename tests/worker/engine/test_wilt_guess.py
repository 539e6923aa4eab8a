"""METRICS.md §10 validation facts for WILT guesses: the safe parser, the interpreter, scoring."""

from __future__ import annotations

import math

import pytest

from worker.engine.wilt_guess import InvalidGuess, grid_points, parse_guess, score_guess

RULE_2 = parse_guess("lambda x, y, z: x < y < z")
RULE_8 = parse_guess("lambda x, y, z: x <= x <= y")  # kept verbatim, effectively x <= y


def test_the_grid_has_68921_points() -> None:
    assert len(grid_points()) == 41**3 == 68_921


def test_an_equivalent_guess_is_correct_and_scores_by_tests_used() -> None:
    found = score_guess(RULE_2, "lambda x,y,z: z>y>x", tests_used=12)
    assert found.correct and found.points == 1060


def test_a_partial_guess_earns_the_pity_score() -> None:
    found = score_guess(RULE_2, "lambda x,y,z: x<y", tests_used=30)
    assert not found.correct
    assert (
        found.grid_agreement == pytest.approx(45_961 / 68_921) == pytest.approx(0.666865, abs=1e-6)
    )
    assert found.points == 266


def test_rule_8_is_x_at_most_y() -> None:
    assert score_guess(RULE_8, "lambda x, y, z: x <= y", tests_used=0).correct


@pytest.mark.parametrize(
    "text",
    [
        "lambda x,y,z: __import__('os')",
        "lambda x,y,z: (1).__class__",
        "lambda x,y,z: [i for i in range(3)]",
        "lambda x,y,z: 'a'",
        "lambda x,y,z: (lambda: 1)()",
        "lambda x,y,z: x.real",
        "lambda x,y,z: open('/etc/passwd')",
        "lambda a,b,c: a < b",
        "lambda x,y,z,w=1: x",
        "lambda x,y,z: {x: y}",
        "lambda x,y,z: (x, y)[0]",
        "x < y",
        "lambda x,y,z: math.floor(x)",
    ],
)
def test_the_parser_refuses_anything_outside_the_grammar(text: str) -> None:
    with pytest.raises(InvalidGuess):
        parse_guess(text)
    assert score_guess(RULE_2, text, 5).points == 0


def test_long_running_and_raising_guesses_score_zero() -> None:
    assert parse_guess("lambda x,y,z: x/0") is not None  # parses
    assert score_guess(RULE_2, "lambda x,y,z: x/0", 3).points == 0
    runaway = score_guess(RULE_2, "lambda x,y,z: 99**(99**99)", 3)
    assert runaway.points == 0 and "Overflow" in runaway.reason
    nested = score_guess(RULE_2, "lambda x,y,z: ((x**64)**64)**64 > 0", 3)
    assert nested.points == 0
    slow = score_guess(
        RULE_2, "lambda x,y,z: " + " + ".join(["x"] * 60) + " > y", 3, cpu_seconds=0.01
    )
    assert slow.points == 0 and "CPU time" in slow.reason


def test_python_semantics() -> None:
    assert parse_guess("lambda x,y,z: x % y")(-7, 3, 0) == -7 % 3 == 2
    assert parse_guess("lambda x,y,z: x % y")(7.5, -2, 0) == 7.5 % -2
    assert parse_guess("lambda x,y,z: int(x)")(-2.7, 0, 0) == -2
    assert parse_guess("lambda x,y,z: math.gcd(int(x), int(y)) == 1")(9, 4, 0) is True
    assert parse_guess("lambda x,y,z: x and y or z")(0, 5, 7) == 7
    assert parse_guess("lambda x,y,z: 1 if x > y else 2")(1, 2, 0) == 2
    assert parse_guess("lambda x,y,z: ~int(x) ^ int(y) & 3 | 1")(5, 6, 0) == (~5 ^ 6 & 3 | 1)
    assert parse_guess("lambda x,y,z: round(x / y, 2)")(1, 3, 0) == round(1 / 3, 2)
    assert math.isclose(parse_guess("lambda x,y,z: x ** 0.5")(2, 0, 0), math.sqrt(2))
