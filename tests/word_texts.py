"""Short texts of random common words: splits whose two sides differ only where a test says."""

from __future__ import annotations

import random

WORDS = [
    "river", "stone", "market", "quiet", "window", "garden", "silver", "letter", "morning",
    "harbor", "pencil", "orange", "bridge", "candle", "forest", "yellow", "engine", "basket",
    "thunder", "meadow", "copper", "lantern", "violet",
]  # fmt: skip


def word_texts(n: int, seed: int, marker: str = "") -> list[str]:
    """n sentences of 12-30 words, each ending in `marker` (a stylistic confound) if given."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30))).capitalize() + marker + "."
        for _ in range(n)
    ]
