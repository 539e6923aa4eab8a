"""PAC, polarised augment calibration (Ye et al., ACL 2024, "Data Contamination Calibration for
Black-box LLMs"), as defined in the authors' code, yyy01/PAC at commit
79c6eca14fed3a64a7a4201cdca263de52501dae (`attack.py`, `src/eda.py`):

- the polarised distance of a sequence's token log-probabilities is the mean of its
  `far`-fraction highest minus the mean of its `local`-fraction lowest (each at least one token;
  defaults 0.05 and 0.3);
- a record's augmentations are EDA random swaps: the text split on single spaces, and
  max(1, int(alpha * words)) random swaps of two words per augmentation (alpha 0.3, 5
  augmentations); a swap gives up after four draws of the same index;
- the authors' PAC is PD(x) minus the mean PD over the augmentations, and they rank members by
  its negation (`roc_auc_score(labels, -PAC)`): `pac_score` returns that negation, so that here
  too a higher score is more member-like.

The authors seed Python's `random` once (0) for the whole run; here each record's
augmentations come from their own `random.Random(seed)`, so a record's score does not depend on
which records came before it. The same generator calls in the same order are made, so a
record's augmentations equal those of the authors' `eda` run right after `random.seed(seed)`.

Like the authors, words are split on spaces only: a record without two of them (one word, or
a script written without spaces) has no augmentation that differs from it, and is left
unscored (`unscorable_reason`) rather than given the authors' silent PAC of 0.0. Splitting such
scripts on the model's tokens instead would be a departure from the paper, not made here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

LOCAL_RATIO = 0.3
FAR_RATIO = 0.05
ALPHA = 0.3
N_AUGMENTATIONS = 5


def _swap_word(words: list[str], rng: random.Random) -> list[str]:
    first = rng.randint(0, len(words) - 1)
    second = first
    tries = 0
    while second == first:
        second = rng.randint(0, len(words) - 1)
        tries += 1
        if tries > 3:
            return words
    words[first], words[second] = words[second], words[first]
    return words


def augmentations(
    text: str, seed: int, alpha: float = ALPHA, n: int = N_AUGMENTATIONS
) -> list[str]:
    """The record's `n` EDA random-swap augmentations, from a generator seeded with `seed`."""
    rng = random.Random(seed)
    words = text.split(" ")
    n_swaps = max(1, int(alpha * len(words)))
    found = []
    for _ in range(n):
        swapped = words.copy()
        for _ in range(n_swaps):
            swapped = _swap_word(swapped, rng)
        found.append(" ".join(swapped))
    rng.shuffle(found)  # the authors shuffle the list; kept so the generator stays in step
    return found


def unscorable_reason(text: str, augmented: Sequence[str]) -> str | None:
    """Why PAC cannot score this text, or None: with fewer than two space-separated words (a
    one-word record, or a script written without spaces such as Chinese, Japanese or Thai) no
    swap changes it, and when no augmentation differs from the text the calibration is PD(x)
    minus itself, a 0.0 that would be ranked as if it were a score."""
    if len([word for word in text.split(" ") if word]) < 2:
        return "fewer than 2 space-separated words"
    if all(other == text for other in augmented):
        return "no augmentation differs from the text"
    return None


def polarised_distance(
    logprobs: Sequence[float] | np.ndarray, local: float = LOCAL_RATIO, far: float = FAR_RATIO
) -> float | None:
    """Mean of the far-fraction highest token log-probs minus that of the local-fraction
    lowest; None for a sequence with no scored token."""
    values = np.sort(np.asarray(logprobs, dtype=np.float64))
    if values.size == 0:
        return None
    n_local = max(int(values.size * local), 1)
    n_far = max(int(values.size * far), 1)
    return float(values[::-1][:n_far].mean() - values[:n_local].mean())


def pac_score(
    record: Sequence[float] | np.ndarray,
    augmented: Sequence[Sequence[float] | np.ndarray],
    local: float = LOCAL_RATIO,
    far: float = FAR_RATIO,
) -> float | None:
    """Mean PD of the augmentations minus PD of the record (the authors' PAC, negated: higher
    is more member-like); None when the record or every augmentation has no scored token."""
    own = polarised_distance(record, local, far)
    others = [d for d in (polarised_distance(a, local, far) for a in augmented) if d is not None]
    if own is None or not others:
        return None
    return float(np.mean(others) - own)
