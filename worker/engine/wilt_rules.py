"""The hidden rules of WILT (METRICS.md §10): the 50 of the full set, by family, and the lite 10.

Each rule is written in the guess grammar and compiled by the same interpreter as a guess, so a
rule and a guess are evaluated identically and no rule text is ever run by `eval`. Where the
reference applies a function to each argument in a comprehension (coprimality, perfect squares),
the expression is spelled out per argument; where it applies bitwise operators to numbers that
may be floats, `int()` comes first, as in the maintained harness. Rule 8 is kept verbatim.

>>> compile_rule("2")(1, 2, 3)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from worker.engine.wilt_guess import Guess, InvalidGuess, parse_guess


def _all(template: str) -> str:
    return " and ".join(f"({template.format(n=n)})" for n in ("x", "y", "z"))


def _pairs(template: str) -> str:
    return " and ".join(
        f"({template.format(a=a, b=b)})" for a, b in (("x", "y"), ("y", "z"), ("z", "x"))
    )


FULL: dict[str, tuple[str, str]] = {
    # id: (family, body of `lambda x, y, z: ...`)
    "1": ("ordering", "x > y > z"),
    "2": ("ordering", "x < y < z"),
    "3": ("ordering", "x >= y >= z"),
    "4": ("ordering", "x <= y <= z"),
    "5": ("ordering", "x < z < y"),
    "6": ("ordering", "x <= z <= y"),
    "7": ("ordering", "z < x < y"),
    "8": ("ordering", "x <= x <= y"),
    "9": ("equality", "x == y and y == z"),
    "10": ("equality", "x != y and y != z and x != z"),
    "11": ("sign", "x < 0 and y < 0 and z < 0"),
    "12": ("sign", "x > 0 and y > 0 and z > 0"),
    "13": ("parity", _all("{n} % 2 == 0")),
    "14": ("parity", _all("{n} % 2 == 1")),
    "15": ("arithmetic", "x + y == z"),
    "16": ("arithmetic", "x * y == z"),
    "17": ("arithmetic", "x - y == z"),
    "18": ("arithmetic", "x + z == y"),
    "19": ("arithmetic", "x * z == y"),
    "20": ("arithmetic", "x - z == y"),
    "21": ("arithmetic", "y + z == x"),
    "22": ("arithmetic", "y * z == x"),
    "23": ("arithmetic", "y - z == x"),
    "24": ("arithmetic", "y - x == z"),
    "25": ("arithmetic", "z - x == y"),
    "26": ("arithmetic", "z - y == x"),
    "27": ("pythagorean", "x**2 + y**2 == z**2"),
    "28": ("pythagorean", "x**2 + z**2 == y**2"),
    "29": ("pythagorean", "y**2 + z**2 == x**2"),
    "30": ("bitwise", "(int(x) & int(y)) == int(z)"),
    "31": ("bitwise", "(int(x) | int(y)) == int(z)"),
    "32": ("bitwise", "(int(x) ^ int(y)) == int(z)"),
    "33": (
        "number theory",
        _all("{n} % 1 == 0") + " and " + _pairs("math.gcd(int({a}), int({b})) == 1"),
    ),
    "34": ("number theory", _all("int(abs({n})**0.5)**2 == {n}")),
    "35": ("sum and product", "x + y + z == 0"),
    "36": ("sum and product", "x * y * z == 0"),
    "37": ("sum and product", "(x + y + z) % 2 == 0"),
    "38": ("sum and product", "(x + y + z) % 2 == 1"),
    "39": ("sum and product", "(x * y * z) % 2 == 0"),
    "40": ("sum and product", "(x * y * z) % 2 == 1"),
    "41": ("max and min", "max(x, y, z) == x"),
    "42": ("max and min", "max(x, y, z) == y"),
    "43": ("max and min", "max(x, y, z) == z"),
    "44": ("max and min", "min(x, y, z) == x"),
    "45": ("max and min", "min(x, y, z) == y"),
    "46": ("max and min", "min(x, y, z) == z"),
    "47": ("fractional", "(0 < x % 1) and (0 < y % 1) and (0 < z % 1)"),
    "48": ("fractional", "0 < x % 1 < y % 1 < z % 1 < 1"),
    "49": ("fractional", "(x < y < z) and (0 < z - x <= 1)"),
    "50": ("arithmetic", "(x + y) / 2 == z"),
}
# TESTS_LITE: nine rules of the full set and one of its own (L10).
LITE: dict[str, tuple[str, str]] = {
    "L1": FULL["1"],
    "L2": FULL["2"],
    "L3": FULL["3"],
    "L4": FULL["4"],
    "L5": FULL["9"],
    "L6": FULL["10"],
    "L7": FULL["11"],
    "L8": FULL["15"],
    "L9": FULL["16"],
    "L10": ("ordering", "x < y and y > z"),
}
BUILTIN: dict[str, tuple[str, str]] = {**FULL, **LITE}
RULE_SETS = {"full": tuple(FULL), "lite": tuple(LITE)}
CUSTOM_FAMILY = "custom"


@dataclass(frozen=True)
class Rule:
    id: str
    family: str
    text: str  # `lambda x, y, z: ...`


def builtin_rule(rule_id: str) -> Rule:
    family, body = BUILTIN[rule_id]
    return Rule(rule_id, family, f"lambda x, y, z: {body}")


def rule_of(value: str, rule_id: str | None = None) -> Rule:
    """A built-in id ("2", "L10") or a user's own lambda in the guess grammar."""
    text = value.strip()
    if text in BUILTIN:
        return builtin_rule(text)
    if not text.startswith("lambda"):
        raise InvalidGuess(f"{value!r} is neither a built-in rule id (1-50, L1-L10) nor a lambda")
    parse_guess(text)  # refuses anything outside the grammar
    return Rule(rule_id or text, CUSTOM_FAMILY, text)


@cache
def compile_rule(value: str) -> Guess:
    return parse_guess(rule_of(value).text)


def rule_set(name: str) -> Sequence[Rule]:
    return [builtin_rule(i) for i in RULE_SETS[name]]
