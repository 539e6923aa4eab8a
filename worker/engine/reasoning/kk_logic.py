"""Knights-and-Knaves logic: statements as nested tuples, their truth under an assignment, and
the brute-force solver that keeps only puzzles with exactly one solution.

A statement is a leaf (`("telling-truth", j)`, `("lying", j)`) or an operator over statements:
`("not", s)`, `("and", s1, s2, ...)`, `("or", s1, s2, ...)`, `("->", a, b)`, `("<=>", a, b)`.

>>> solutions((("lying", 1), ("telling-truth", 0)))
[(False, True)]
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import Any

import numpy as np

Statement = tuple[Any, ...]
LEAVES = ("telling-truth", "lying")


def holds(statement: Statement, assignment: Sequence[bool]) -> bool:
    """Whether the statement is true when person i is a knight iff assignment[i]."""
    head = statement[0]
    if head == "telling-truth":
        return assignment[statement[1]]
    if head == "lying":
        return not assignment[statement[1]]
    if head == "not":
        return not holds(statement[1], assignment)
    if head == "and":
        return all(holds(s, assignment) for s in statement[1:])
    if head == "or":
        return any(holds(s, assignment) for s in statement[1:])
    if head == "->":
        return (not holds(statement[1], assignment)) or holds(statement[2], assignment)
    if head == "<=>":
        return holds(statement[1], assignment) == holds(statement[2], assignment)
    raise ValueError(f"unknown operator {head!r}")


def solutions(statements: Sequence[Statement]) -> list[tuple[bool, ...]]:
    """Every assignment under which each person is a knight exactly when their statement holds."""
    n = len(statements)
    return [
        assignment
        for assignment in product((True, False), repeat=n)
        if all(assignment[i] == holds(statements[i], assignment) for i in range(n))
    ]


def leaves(statement: Statement) -> list[tuple[int, ...]]:
    """Paths (child positions) to every leaf, depth first."""
    if statement[0] in LEAVES:
        return [()]
    return [(i, *rest) for i in range(1, len(statement)) for rest in leaves(statement[i])]


def replace_at(statement: Statement, path: tuple[int, ...], new: Statement) -> Statement:
    if not path:
        return new
    head, *children = statement
    position = path[0] - 1
    children[position] = replace_at(children[position], path[1:], new)
    return (head, *children)


class StatementSampler:
    """The reference generator's draw: at depth budget δ a die in 0..5 gives a leaf (δ = 1 or
    0), `not` (1), `and`/`or` (2/3, width 2..W), `->`/`<=>` (4/5); operands at δ − 1, distinct."""

    MAX_TRIES = 100

    def __init__(self, n_people: int, depth: int, width: int, rng: np.random.Generator) -> None:
        if not 2 <= n_people <= 8 or depth < 1 or width < 2:
            raise ValueError("need 2-8 people, depth >= 1 and width >= 2")
        self.n, self.depth, self.width, self.rng = n_people, depth, width, rng

    def leaf(self, speaker: int) -> Statement:
        while True:
            kind = LEAVES[int(self.rng.integers(0, 2))]
            target = int(self.rng.integers(0, self.n))
            if not (kind == "lying" and target == speaker):  # "I am lying" is a paradox
                return (kind, target)

    def statement(self, speaker: int, depth: int | None = None) -> Statement:
        depth = self.depth if depth is None else depth
        dice = int(self.rng.integers(0, 6))
        if depth == 1 or dice == 0:
            return self.leaf(speaker)
        if dice == 1:
            return ("not", self.statement(speaker, depth - 1))
        if dice in (2, 3):
            count = int(self.rng.integers(2, self.width + 1))
            return ("and" if dice == 2 else "or", *self._distinct(speaker, depth - 1, count))
        return ("->" if dice == 4 else "<=>", *self._distinct(speaker, depth - 1, 2))

    def _distinct(self, speaker: int, depth: int, count: int) -> list[Statement]:
        found: list[Statement] = []
        for _ in range(self.MAX_TRIES):
            candidate = self.statement(speaker, depth)
            if candidate not in found:
                found.append(candidate)
                if len(found) == count:
                    return found
        return found if len(found) >= 2 else [*found, self.leaf(speaker)]
