"""The WILT rule table and conversation protocol (METRICS.md §10): turn parsing, the mulligan,
the test budget, the turn cap, repeats, and the scripted prober."""

from __future__ import annotations

import pytest

from tests.worker.checks.reasoning.wilt_agents import Prober
from worker.engine.wilt_guess import score_guess
from worker.engine.wilt_protocol import Conversation, ProtocolParams, read_turn, run_conversations
from worker.engine.wilt_rules import FULL, LITE, compile_rule, rule_of, rule_set

FAST = ProtocolParams(n_random=500)


def _play(rule: str, replies: list[str], params: ProtocolParams = FAST) -> Conversation:
    conversation = Conversation(compile_rule(rule), params)
    script = iter(replies)
    run_conversations([conversation], lambda batch: [next(script) for _ in batch])
    return conversation


def test_the_rule_table() -> None:
    assert len(rule_set("full")) == 50 and len(rule_set("lite")) == 10
    assert list(FULL) == [str(i) for i in range(1, 51)]
    families = {family for family, _ in FULL.values()}
    assert {"ordering", "parity", "pythagorean", "bitwise", "fractional", "max and min"} <= families
    # Every rule compiles in the guess grammar and evaluates on the whole grid without raising.
    for rule in [*rule_set("full"), *rule_set("lite")]:
        assert score_guess(compile_rule(rule.id), rule.text, 0, n_random=200).correct, rule.id
    assert score_guess(compile_rule("8"), "lambda x, y, z: x <= y", 0).correct
    assert LITE["L10"][1] == "x < y and y > z"
    assert compile_rule("33")(3, 4, 5) and not compile_rule("33")(2, 4, 5)
    assert compile_rule("34")(4, 9, 16) and not compile_rule("34")(-4, 9, 16)
    assert compile_rule("30")(6.5, 3, 2) and compile_rule("27")(3, 4, 5)
    assert compile_rule("48")(0.1, 1.2, 2.3) and not compile_rule("48")(1, 2, 3)
    custom = rule_of("lambda x, y, z: x == 2 * y", "mine")
    assert (custom.id, custom.family) == ("mine", "custom")
    for bad in ["99", "x < y", "lambda x, y, z: __import__('os')"]:
        with pytest.raises(ValueError):
            rule_of(bad)


@pytest.mark.parametrize(
    ("reply", "action", "values"),
    [
        ("Plan.\nTest Case: ```(1, 2, 3)```", "test", (1, 2, 3)),
        ("test case: `(-1.5, +2, .25)`", "test", (-1.5, 2, 0.25)),
        ("Test Case: ```(999, -999, 9.99)```", "test", (999, -999, 9.99)),
        ("Test Case: ```(1000, 2, 3)```", "malformed", None),
        ("Test Case: ```(1, 2)```", "malformed", None),
        ("Test Case: ```(1, two, 3)```", "malformed", None),
        ("Test Case: (1, 2, 3)", "malformed", None),
        ("I am thinking.", "malformed", None),
        # The last action in a reply is the one taken.
        ("Final Guess: `lambda x,y,z: x` no wait. Test Case: ```(4, 5, 6)```", "test", (4, 5, 6)),
    ],
)
def test_turn_parsing(reply: str, action: str, values) -> None:
    turn = read_turn(reply)
    assert turn.action == action and turn.values == values


def test_a_final_guess_in_triple_or_single_backticks() -> None:
    assert read_turn("Final Guess: ```python\nlambda x, y, z: x < y\n```").guess == (
        "lambda x, y, z: x < y"
    )
    assert read_turn("FINAL GUESS: `lambda x,y,z: z > y`").guess == "lambda x,y,z: z > y"


def test_tests_results_and_repeats_then_a_correct_guess() -> None:
    conversation = _play(
        "2",
        [
            "Test Case: ```(1, 2, 3)```",
            "Test Case: ```(3, 2, 1)```",
            "Test Case: ```(1.0, 2.0, 3.0)```",
            "Final Guess: ```lambda x, y, z: z > y > x```",
        ],
    )
    result = conversation.result()
    assert conversation.results == [True, False, True]
    assert result["tests_used"] == 3 and result["repeated_tests"] == 1
    assert result["correct"] and result["points"] == round(1000 + 100 * (1 - 3 / 30)) == 1090
    assert conversation.messages[3]["content"] == "Result for (1, 2, 3): True. Tests remaining: 29."


def test_one_mulligan_then_abort_and_a_good_turn_resets_it() -> None:
    recovered = _play(
        "2",
        [
            "no action",
            "Test Case: ```(1, 2, 3)```",
            "still none",
            "Final Guess: `lambda x,y,z: x<y<z`",
        ],
    )
    assert recovered.outcome == "guessed" and recovered.result()["correct"]
    aborted = _play("2", ["no action", "Test Case: (1, 2, 3)"])
    assert aborted.outcome == "aborted" and aborted.result()["points"] == 0
    strict = _play("2", ["no action"], ProtocolParams(mulligans=0, n_random=500))
    assert strict.outcome == "aborted" and strict.turns == 1


def test_the_test_budget_and_the_turn_cap() -> None:
    params = ProtocolParams(max_tests=3, max_turns=5, n_random=500)
    over = _play(
        "2", ["Test Case: ```(1, 2, 3)```"] * 4 + ["Final Guess: `lambda x,y,z: x<y<z`"], params
    )
    assert len(over.tests) == 3
    assert "Give your final guess now." in over.messages[-5]["content"]
    assert "No tests are left" in over.messages[-3]["content"]
    assert over.result()["points"] == 1000  # every test used: no bonus
    looping = _play(
        "2",
        [f"Test Case: ```({i}, 0, 0)```" for i in range(3)] + ["hmm", "Test Case: `(5, 5, 5)`"],
        params,
    )
    assert looping.outcome == "aborted"
    capped = _play(
        "2",
        [
            "Test Case: ```(1, 2, 3)```",
            "x",
            "Test Case: ```(2, 3, 4)```",
            "y",
            "Test Case: ```(3, 4, 5)```",
        ],
        params,
    )
    assert capped.outcome == "out_of_turns" and capped.result()["points"] == 0


def test_an_invalid_or_raising_guess_ends_the_game_with_zero() -> None:
    invalid = _play("2", ["Final Guess: `lambda x,y,z: __import__('os')`"])
    assert invalid.outcome == "guessed" and not invalid.result()["valid"]
    assert invalid.result()["points"] == 0 and "invalid_guess" in invalid.result()["invalid_reason"]
    raising = _play("2", ["Final Guess: `lambda x,y,z: x / 0`"])
    assert raising.result()["valid"] and raising.result()["points"] == 0


def test_a_scripted_prober_solves_several_rules_in_lockstep() -> None:
    prober = Prober()
    ids = ["2", "9", "16", "27", "33", "41", "47", "L10"]
    conversations = [Conversation(compile_rule(i), FAST) for i in ids]
    calls = []

    def chat(batch):
        calls.append(len(batch))
        return [prober.reply(messages) for messages in batch]

    run_conversations(conversations, chat)
    solved = [i for i, c in zip(ids, conversations, strict=True) if c.result()["correct"]]
    assert set(solved) >= {"2", "9", "16", "27", "33", "41"} and "L10" not in solved
    assert calls[0] == len(ids) and calls == sorted(calls, reverse=True)  # batched turns
    assert all(c.result()["tests_used"] < 30 for c in conversations)
