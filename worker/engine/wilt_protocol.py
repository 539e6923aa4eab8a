"""The WILT conversation (METRICS.md §10): instructions, then up to `max_tests` probes answered
True/False, then one final guess, with one re-prompt (the mulligan) for a malformed turn.

A `Conversation` is a state machine fed one model reply at a time, so many of them can run in
lockstep, one batched generation per turn, and a test can drive it with a scripted agent.

>>> read_turn("I will check order. Test Case: ```(1, 2, 3)```")
Turn(action='test', values=(1, 2, 3), guess=None, problem=None)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.engine.wilt_guess import Guess, GuessScore, score_guess

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}
ChatBatch = Callable[[Sequence[Sequence[Message]]], list[str]]

INSTRUCTIONS = """\
A hidden rule takes three numbers x, y and z and answers True or False. Your task is to find it.
Each number may be any integer or decimal written with at most 3 digits (signs and the decimal \
point do not count), for example 7, -40 or 2.5.

Every reply of yours ends with exactly one action, on its own last line:
1. A test: `Test Case: ```(x, y, z)```` with three numbers. You are told whether the rule holds \
for them and how many tests you have left. You have at most {max_tests} tests; the rule is \
deterministic, so repeating a test teaches nothing.
2. Your final guess, as a Python lambda: `Final Guess: ```lambda x, y, z: x < y < z````. You \
guess exactly once and the game ends; a wrong guess scores almost nothing, and fewer tests \
score more.

Before the action, explain briefly what you are testing and why."""
FORMAT_REMINDER = (
    "Please end your reply with exactly one action, wrapped in triple backticks: "
    "'Test Case: ```(1, 2, 3)```' or 'Final Guess: ```lambda x, y, z: x < y < z```'."
)
NUMBER = re.compile(r"[-+]?(\d*\.\d+|\d+)")
MARKERS = re.compile(r"test case:?|final guess:?", re.IGNORECASE)
BACKTICKED = re.compile(r"```(?:python)?\s*(.+?)\s*```|`([^`]+)`", re.DOTALL)
MAX_DIGITS = 3
MAX_MESSAGE_CHARS = 8000  # what a transcript keeps of one message


@dataclass(frozen=True)
class Turn:
    action: str  # test | guess | malformed
    values: tuple[int | float, ...] | None = None
    guess: str | None = None
    problem: str | None = None


def _number(text: str) -> int | float | None:
    text = text.strip()
    if not NUMBER.fullmatch(text):
        return None
    return float(text) if "." in text else int(text)


def read_turn(reply: str) -> Turn:
    """The action at the end of a reply: the last `Test Case:` or `Final Guess:` marker wins."""
    markers = list(MARKERS.finditer(reply))
    if not markers:
        return Turn("malformed", problem="No 'Test Case:' or 'Final Guess:' in the reply")
    last = markers[-1]
    rest = reply[last.end() :]
    found = BACKTICKED.search(rest)
    action = "guess" if last.group(0).lower().startswith("final") else "test"
    if found is None:
        return Turn("malformed", problem=f"The {action} is not wrapped in backticks")
    content = (found.group(1) or found.group(2) or "").strip()
    if action == "guess":
        return Turn("guess", guess=content)
    inner = content.strip()
    if not (inner.startswith("(") and inner.endswith(")")):
        return Turn("malformed", problem="A test is three numbers in parentheses: (x, y, z)")
    values = [_number(part) for part in inner[1:-1].split(",")]
    if len(values) != 3 or any(v is None for v in values):
        return Turn("malformed", problem="A test is exactly three numbers: (x, y, z)")
    digits = [len(re.sub(r"\D", "", part)) for part in inner[1:-1].split(",")]
    if max(digits) > MAX_DIGITS:
        return Turn("malformed", problem=f"Each number may have at most {MAX_DIGITS} digits")
    return Turn("test", values=tuple(values))  # type: ignore[arg-type]


def _shown(values: Sequence[int | float]) -> str:
    return "(" + ", ".join(repr(v) for v in values) + ")"


@dataclass(frozen=True)
class ProtocolParams:
    max_tests: int = 30
    mulligans: int = 1
    max_turns: int = 35
    n_random: int = 10_000
    seed: int = 0
    eval_cpu_s: float = 5.0


@dataclass
class Conversation:
    """One rule, one clean conversation: only the instructions, then the model's turns."""

    rule: Guess
    params: ProtocolParams
    messages: list[Message] = field(default_factory=list)
    tests: list[tuple[int | float, ...]] = field(default_factory=list)
    results: list[bool] = field(default_factory=list)
    failures: int = 0  # malformed turns in a row
    turns: int = 0
    outcome: str | None = None  # guessed | aborted | out_of_turns
    guess: str | None = None
    score: GuessScore | None = None

    def __post_init__(self) -> None:
        if not self.messages:
            self.messages = [
                {"role": "system", "content": INSTRUCTIONS.format(max_tests=self.params.max_tests)},
                {"role": "user", "content": "Begin: propose your first test."},
            ]

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def _say(self, reply: str, answer: str) -> None:
        self.messages.append({"role": "assistant", "content": reply[:MAX_MESSAGE_CHARS]})
        self.messages.append({"role": "user", "content": answer})

    def _malformed(self, reply: str, problem: str) -> None:
        self.failures += 1
        if self.failures > self.params.mulligans:
            self._say(reply, f"{problem}. Aborting: no points for this rule.")
            self.outcome = "aborted"
        else:
            self._say(reply, f"{problem}. {FORMAT_REMINDER}")

    def step(self, reply: str) -> None:
        """Take the model's next reply and answer it as the harness."""
        if self.done:
            raise ValueError("the conversation is over")
        self.turns += 1
        turn = read_turn(reply)
        if turn.action == "malformed":
            self._malformed(reply, turn.problem or "Malformed reply")
        elif turn.action == "test" and len(self.tests) >= self.params.max_tests:
            self._malformed(reply, "No tests are left")
        elif turn.action == "test":
            self.failures = 0
            values = turn.values or ()
            try:
                result = bool(self.rule(*values))
            except (ArithmeticError, ValueError, TypeError):
                result = False  # a rule that cannot evaluate a point does not hold there
            self.tests.append(values)
            self.results.append(result)
            left = self.params.max_tests - len(self.tests)
            note = " Give your final guess now." if left == 0 else ""
            self._say(
                reply, f"Result for {_shown(values)}: {result}. Tests remaining: {left}.{note}"
            )
        else:
            self.guess = turn.guess
            self.score = score_guess(
                self.rule,
                turn.guess or "",
                len(self.tests),
                max_tests=self.params.max_tests,
                n_random=self.params.n_random,
                seed=self.params.seed,
                cpu_seconds=self.params.eval_cpu_s,
            )
            verdict = "correct" if self.score.correct else "not the rule"
            self._say(reply, f"Your guess is {verdict}. Score: {self.score.points}.")
            self.outcome = "guessed"
            return
        if not self.done and self.turns >= self.params.max_turns:
            self.messages.append(
                {"role": "user", "content": f"{self.params.max_turns} turns without a guess: over."}
            )
            self.outcome = "out_of_turns"

    def result(self) -> dict[str, Any]:
        score = self.score
        seen = [tuple(float(v) for v in t) for t in self.tests]
        return {
            "outcome": self.outcome,
            "tests_used": len(self.tests),
            "repeated_tests": len(seen) - len(set(seen)),
            "turns": self.turns,
            "guess": self.guess,
            "valid": bool(score and score.valid),
            "correct": bool(score and score.correct),
            "grid_agreement": score.grid_agreement if score else None,
            "points": score.points if score else 0,
            "invalid_reason": score.reason if score and not score.correct else None,
        }


def run_conversations(conversations: Sequence[Conversation], chat: ChatBatch) -> None:
    """Every conversation to its end, the ones still going asked together, one turn at a time."""
    while active := [c for c in conversations if not c.done]:
        replies = chat([c.messages for c in active])
        if len(replies) != len(active):
            raise ValueError(f"the chat model gave {len(replies)} replies for {len(active)}")
        for conversation, reply in zip(active, replies, strict=True):
            conversation.step(reply)
