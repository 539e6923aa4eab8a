"""Knights-and-Knaves puzzle sets: seeded generation with unique solutions, the quiz text, and
the six perturbations of Xie et al. (METRICS.md §6).

>>> puzzle = generate_puzzles(2, 1, seed=1234)[0]
>>> len(solutions(puzzle.statements))
1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from worker.engine.reasoning.kk_logic import (
    Statement,
    StatementSampler,
    leaves,
    replace_at,
    solutions,
)

COMMON_NAMES = (
    "Emma",
    "Liam",
    "Olivia",
    "Noah",
    "Ava",
    "Ethan",
    "Sophia",
    "Mason",
    "Isabella",
    "William",
    "Mia",
    "James",
    "Charlotte",
    "Benjamin",
    "Amelia",
    "Lucas",
    "Harper",
    "Henry",
    "Evelyn",
    "Alexander",
    "Abigail",
    "Michael",
    "Emily",
    "Daniel",
    "Elizabeth",
    "Jacob",
    "Sofia",
    "Logan",
    "Avery",
    "Jackson",
    "Ella",
    "Sebastian",
    "Scarlett",
    "Jack",
    "Grace",
    "Aiden",
    "Chloe",
    "Owen",
    "Victoria",
    "Samuel",
    "Riley",
    "Matthew",
    "Aria",
    "Joseph",
    "Lily",
    "Luke",
    "Zoey",
    "David",
)
UNCOMMON_NAMES = (
    "Zephyrine",
    "Thaddeus",
    "Isolde",
    "Bartholomew",
    "Ottoline",
    "Ignatius",
    "Wilhelmina",
    "Leopold",
    "Araminta",
    "Cornelius",
    "Philippa",
    "Evander",
    "Clementine",
    "Lysander",
    "Rosalind",
    "Percival",
    "Seraphina",
    "Augustin",
    "Henrietta",
    "Barnaby",
    "Guinevere",
    "Octavius",
    "Marigold",
    "Ptolemy",
    "Hermione",
    "Fitzgerald",
    "Ophelia",
    "Casimir",
)
DEFAULT_ROLES = ("knight", "knave")
ROLE_PAIRS = (
    ("pioneer", "laggard"),
    ("saint", "sinner"),
    ("hero", "villain"),
    ("angel", "devil"),
    ("altruist", "egoist"),
    ("sage", "fool"),
)
PERTURBATIONS = (
    "perturbed_statement",
    "perturbed_leaf",
    "random_pair",
    "flip_role",
    "uncommon_name",
    "reorder_statement",
)
MATH_LEVEL = ("perturbed_statement", "perturbed_leaf")  # the answer changes
MAX_TRIES = 200


@dataclass(frozen=True)
class Puzzle:
    index: int
    statements: tuple[Statement, ...]
    solution: tuple[bool, ...]  # person i is truthful
    names: tuple[str, ...]
    roles: tuple[str, str] = DEFAULT_ROLES  # (truth-teller, liar)
    order: tuple[int, ...] = ()  # the order the statements are told in; default as given

    @property
    def n_people(self) -> int:
        return len(self.statements)

    def role_of(self, person: int) -> str:
        return self.roles[0] if self.solution[person] else self.roles[1]

    def quiz(self) -> str:
        truthful, liar = self.roles
        names = list(self.names)
        listed = (
            ", ".join(names[:-1]) + f", and {names[-1]}" if len(names) > 2 else " and ".join(names)
        )
        told = self.order or range(self.n_people)
        said = " ".join(
            f"{self.names[i]} {'said' if k % 2 else 'says'}, "
            f'"{_sentence(self.statements[i], self)}."'
            for k, i in enumerate(told)
        )
        return (
            f"A very special island is inhabited only by {truthful}s and {liar}s. "
            f"{truthful.capitalize()}s always tell the truth, and {liar}s always lie. "
            f"You meet {self.n_people} inhabitants: {listed}. {said} "
            f"So who is {article(truthful)} and who is {article(liar)}?"
        )

    def solution_text(self) -> str:
        parts = [f"{self.names[i]} is {article(self.role_of(i))}" for i in range(self.n_people)]
        return (", ".join(parts[:-1]) + f", and {parts[-1]}.") if len(parts) > 1 else parts[0] + "."

    def solution_text_format(self) -> str:
        return "\n".join(
            f"({i + 1}) {self.names[i]} is {article(self.role_of(i))}" for i in range(self.n_people)
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "quiz": self.quiz(),
            "names": list(self.names),
            "knight_knave": {"knight": self.roles[0], "knave": self.roles[1]},
            "solution": list(self.solution),
            "solution_text": self.solution_text(),
            "solution_text_format": self.solution_text_format(),
            "statements": _plain(self.statements),
        }


def article(word: str) -> str:
    """`a knight`, `an angel`: the role words of some pairs start with a vowel."""
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


def _sentence(statement: Statement, puzzle: Puzzle) -> str:
    head = statement[0]
    truthful, liar = puzzle.roles
    if head == "telling-truth":
        return f"{puzzle.names[statement[1]]} is {article(truthful)}"
    if head == "lying":
        return f"{puzzle.names[statement[1]]} is {article(liar)}"
    parts = [_sentence(s, puzzle) for s in statement[1:]]
    if head == "not":
        return f"it is not the case that {parts[0]}"
    if head in ("and", "or"):
        return f"({f' {head} '.join(parts)})" if len(parts) > 2 else f" {head} ".join(parts)
    if head == "->":
        return f"if {parts[0]} then {parts[1]}"
    return f"{parts[0]} if and only if {parts[1]}"


def _names(rng: np.random.Generator, n: int, pool: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(name) for name in rng.choice(pool, size=n, replace=False))


def generate_puzzles(
    n_people: int, count: int, *, depth: int = 2, width: int = 2, seed: int = 1234
) -> list[Puzzle]:
    """`count` distinct puzzles with exactly one solution each; the same seed gives the same set.
    Names for item i come from a generator seeded with seed + i."""
    rng = np.random.default_rng(seed)
    sampler = StatementSampler(n_people, depth, width, rng)
    puzzles: list[Puzzle] = []
    seen: set[tuple[Statement, ...]] = set()
    tries = 0
    while len(puzzles) < count:
        tries += 1
        if tries > count * MAX_TRIES:
            raise ValueError(f"could not find {count} unique puzzles for {n_people} people")
        statements = tuple(sampler.statement(i) for i in range(n_people))
        found = solutions(statements)
        if len(found) != 1 or statements in seen:
            continue
        seen.add(statements)
        index = len(puzzles)
        names = _names(np.random.default_rng(seed + index), n_people, COMMON_NAMES)
        puzzles.append(Puzzle(index, statements, found[0], names))
    return puzzles


def perturb(puzzle: Puzzle, kind: str, seed: int, depth: int = 2, width: int = 2) -> Puzzle | None:
    """One perturbation of a puzzle, or None where none is valid (a math-level change must keep
    one solution and change it)."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}")
    rng = np.random.default_rng([seed, puzzle.index, PERTURBATIONS.index(kind)])
    if kind in MATH_LEVEL:
        sampler = StatementSampler(puzzle.n_people, depth, width, rng)
        for _ in range(MAX_TRIES):
            person = int(rng.integers(0, puzzle.n_people))
            statements = list(puzzle.statements)
            if kind == "perturbed_statement":
                statements[person] = sampler.statement(person)
            else:
                paths = leaves(statements[person])
                path = paths[int(rng.integers(0, len(paths)))]
                statements[person] = replace_at(statements[person], path, sampler.leaf(person))
            found = solutions(statements)
            if len(found) == 1 and found[0] != puzzle.solution:
                return replace(puzzle, statements=tuple(statements), solution=found[0])
        return None
    if kind == "random_pair":
        pair = ROLE_PAIRS[int(rng.integers(0, len(ROLE_PAIRS)))]
        return replace(puzzle, roles=pair)
    if kind == "flip_role":
        return replace(puzzle, roles=(puzzle.roles[1], puzzle.roles[0]))
    if kind == "uncommon_name":
        return replace(puzzle, names=_names(rng, puzzle.n_people, UNCOMMON_NAMES))
    identity = tuple(range(puzzle.n_people))
    for _ in range(MAX_TRIES):
        order = tuple(int(i) for i in rng.permutation(puzzle.n_people))
        if order != identity:
            return replace(puzzle, order=order)
    return None
