"""A small corpus with every finding a dataset report draws planted at a known place: exact
duplicate groups, a near-duplicate pair, PII of several types (one e-mail in three records),
and an evaluation set with known overlap. Shared by the report's unit and browser tests."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tests.word_texts import WORDS

EMAIL = "jane.roe@example.org"  # in the three copies of one duplicate group
PHONE = "+1 415 555 0132"  # in both records of the near-duplicate pair
CARD = "4539 1488 0343 6467"  # Luhn-valid, no repeated block
IBAN = "GB82 WEST 1234 5698 7654 32"
IP = "192.168.10.42"
API_KEY = "AKIAIOSFODNN7EXAMPLE"
POSSIBLE_SECRET = "x9Fq2LmZ8rT4vB7nK1pW6sD3hJ5gC0aE"  # high entropy, no known format
# Every raw value, in each spelling a page could leak it in.
RAW_VALUES = (
    EMAIL,
    "jane.roe",
    PHONE,
    "415 555 0132",
    CARD,
    CARD.replace(" ", ""),
    IBAN,
    IBAN.replace(" ", ""),
    IP,
    API_KEY,
    POSSIBLE_SECRET,
)
N_UNIQUE = 30


@dataclass(frozen=True)
class PlantedCorpus:
    corpus: list[dict]
    evaluation: list[dict]
    duplicate_groups: dict[str, int]  # record id prefix -> copies
    near_pair: tuple[str, str]
    contaminated_ids: set[str]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def planted_corpus(seed: int = 13) -> PlantedCorpus:
    rng = random.Random(seed)
    unique = [sentence(rng, 40) for _ in range(N_UNIQUE)]
    for i, value in enumerate((CARD, IBAN, IP, API_KEY, POSSIBLE_SECRET)):
        unique[i + 10] += f" ref {value} end"
    corpus = [{"id": f"u{i}", "text": text} for i, text in enumerate(unique)]
    with_email = f"please reach {EMAIL} about the {sentence(rng, 30)}"
    corpus += [{"id": f"email-{c}", "text": with_email} for c in range(3)]
    plain = sentence(rng, 35)
    corpus += [{"id": f"plain-{c}", "text": plain} for c in range(2)]
    words = f"call {PHONE} {sentence(rng, 80)}".split()
    near = list(words)
    near[50] = "CHANGED"  # one word: 5 of the 80-odd shingles differ
    corpus += [{"id": "near-a", "text": " ".join(words)}, {"id": "near-b", "text": " ".join(near)}]
    rng.shuffle(corpus)

    def novel(n: int) -> str:
        return " ".join(f"novel{rng.randrange(10**6)}" for _ in range(n))

    run = " ".join(unique[1].split()[5:18])  # one 13-word run of a corpus record
    evaluation = [
        {"id": "copied", "text": unique[0]},
        {"id": "run", "text": f"{novel(20)} {run} {novel(20)}"},
    ]
    evaluation += [{"id": f"clean-{i}", "text": novel(30)} for i in range(4)]
    return PlantedCorpus(
        corpus,
        evaluation,
        {"email": 3, "plain": 2},
        ("near-a", "near-b"),
        {"copied", "run"},
    )
