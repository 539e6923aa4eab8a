"""WILT guesses (METRICS.md §10): a model's `lambda x, y, z: ...` parsed with `ast` against a
whitelist and run by a small interpreter, never by `eval`, then scored against the hidden rule
on seeded random points and the integer grid.

>>> guess = parse_guess("lambda x, y, z: z > y > x")
>>> guess(1, 2, 3), guess(3, 2, 1)
(True, False)
"""

from __future__ import annotations

import ast
import math
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

ARGUMENTS = ("x", "y", "z")
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "int": int,
    "round": round,
}
BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,  # Python's floor modulo, negative numbers and floats included
    ast.Pow: operator.pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
}
UNARY = {
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}
COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
MAX_NODES = 300
MAX_EXPONENT = 64
MAX_MAGNITUDE = 10**100  # an integer past this is a runaway, not an answer
GRID = range(-20, 21)


class InvalidGuess(ValueError):
    """Text that is not a lambda of x, y, z in the allowed grammar."""


Compiled = Callable[[dict[str, Any]], Any]


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_MAGNITUDE:
        raise OverflowError("integer out of bounds")
    return value


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(exponent, int | float) and abs(exponent) > MAX_EXPONENT:
        raise OverflowError("exponent out of bounds")
    return _bounded(base**exponent)


def _compile(node: ast.AST) -> Compiled:
    """A closure that evaluates the node: the interpreter, built once per guess."""
    if isinstance(node, ast.Name):
        if node.id not in ARGUMENTS:
            raise InvalidGuess(f"name {node.id!r} is not allowed")
        name = node.id
        return lambda env: env[name]
    if isinstance(node, ast.Constant):
        if type(node.value) not in (int, float, bool):
            raise InvalidGuess("only numeric and boolean constants are allowed")
        value = node.value
        return lambda _env: value
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v) for v in node.values]
        if isinstance(node.op, ast.And):

            def both(env: dict[str, Any]) -> Any:
                result: Any = True
                for part in parts:
                    result = part(env)
                    if not result:
                        return result
                return result

            return both

        def either(env: dict[str, Any]) -> Any:
            result: Any = False
            for part in parts:
                result = part(env)
                if result:
                    return result
            return result

        return either
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        function, operand = UNARY[type(node.op)], _compile(node.operand)
        return lambda env: function(operand(env))
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _compile(node.left), _compile(node.right)
        if isinstance(node.op, ast.Pow):
            return lambda env: _power(left(env), right(env))
        function = BINARY[type(node.op)]
        return lambda env: _bounded(function(left(env), right(env)))
    if isinstance(node, ast.Compare) and all(type(op) in COMPARE for op in node.ops):
        first = _compile(node.left)
        steps = [
            (COMPARE[type(op)], _compile(c))
            for op, c in zip(node.ops, node.comparators, strict=True)
        ]

        def chained(env: dict[str, Any]) -> bool:
            left = first(env)
            for function, part in steps:
                right = part(env)
                if not function(left, right):
                    return False
                left = right
            return True

        return chained
    if isinstance(node, ast.IfExp):
        test, body, orelse = _compile(node.test), _compile(node.body), _compile(node.orelse)
        return lambda env: body(env) if test(env) else orelse(env)
    if isinstance(node, ast.Call) and not node.keywords:
        function = _function(node.func)
        args = [_compile(a) for a in node.args]
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise InvalidGuess("starred arguments are not allowed")
        return lambda env: _bounded(function(*(a(env) for a in args)))
    raise InvalidGuess(f"{type(node).__name__} is not allowed in a guess")


def _function(node: ast.AST) -> Callable[..., Any]:
    if isinstance(node, ast.Name) and node.id in FUNCTIONS:
        return FUNCTIONS[node.id]
    if (
        isinstance(node, ast.Attribute)
        and node.attr == "gcd"
        and isinstance(node.value, ast.Name)
        and node.value.id == "math"
    ):
        return math.gcd
    raise InvalidGuess("only abs, min, max, int, round and math.gcd may be called")


@dataclass(frozen=True)
class Guess:
    text: str
    body: Compiled

    def __call__(self, x: Any, y: Any, z: Any) -> Any:
        return self.body({"x": x, "y": y, "z": z})


def parse_guess(text: str) -> Guess:
    """The guess as a callable, or InvalidGuess: a lambda of exactly x, y, z (positional), whose
    body uses only the whitelisted nodes."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise InvalidGuess(f"not a Python expression: {exc.msg}") from None
    function = tree.body
    if not isinstance(function, ast.Lambda):
        raise InvalidGuess("the guess must be a lambda")
    arguments = function.args
    names = tuple(a.arg for a in arguments.args)
    extra = (
        arguments.posonlyargs,
        arguments.kwonlyargs,
        arguments.vararg,
        arguments.kwarg,
        arguments.defaults,
    )
    if names != ARGUMENTS or any(extra):
        raise InvalidGuess("the lambda must take exactly x, y, z")
    if sum(1 for _ in ast.walk(function.body)) > MAX_NODES:
        raise InvalidGuess(f"the guess has more than {MAX_NODES} nodes")
    return Guess(text, _compile(function.body))


def grid_points() -> list[tuple[int, int, int]]:
    """Every integer point of [-20, 20]³: 68,921 of them."""
    return list(product(GRID, GRID, GRID))


def random_points(n: int, seed: int) -> list[tuple[float, float, float]]:
    """n points from U(1, 100)³, seeded (the reference leaves them unseeded)."""
    values = np.random.default_rng(seed).uniform(1, 100, size=(n, 3))
    return [tuple(float(v) for v in row) for row in values]


@dataclass(frozen=True)
class GuessScore:
    valid: bool
    correct: bool
    grid_agreement: float | None
    points: int
    reason: str | None = None


def _agreement(rule: Guess, guess: Guess, points: list, deadline: float) -> int:
    same = 0
    for i, (x, y, z) in enumerate(points):
        if i % 2048 == 0 and time.process_time() > deadline:
            raise TimeoutError("the guess ran past its CPU time")
        same += rule(x, y, z) == guess(x, y, z)
    return same


def score_guess(
    rule: Guess,
    guess_text: str,
    tests_used: int,
    *,
    max_tests: int = 30,
    n_random: int = 10_000,
    seed: int = 0,
    cpu_seconds: float = 5.0,
) -> GuessScore:
    """Correct iff the guess equals the rule at every random and grid point: 1000 + 100·(1 −
    tests/max); wrong: int(400 × grid agreement); invalid, raising or too slow: 0."""
    try:
        guess = parse_guess(guess_text)
    except InvalidGuess as exc:
        return GuessScore(False, False, None, 0, f"invalid_guess: {exc}")
    deadline = time.process_time() + cpu_seconds
    grid = grid_points()
    try:
        random_same = _agreement(rule, guess, random_points(n_random, seed), deadline)
        grid_same = _agreement(rule, guess, grid, deadline)
    except (ArithmeticError, ValueError, TypeError, TimeoutError, RecursionError) as exc:
        return GuessScore(True, False, None, 0, f"{type(exc).__name__}: {exc}")
    agreement = grid_same / len(grid)
    if random_same == n_random and grid_same == len(grid):
        return GuessScore(True, True, 1.0, round(1000 + 100 * (1 - tests_used / max_tests)))
    return GuessScore(True, False, agreement, int(400 * agreement))
