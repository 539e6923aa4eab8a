"""Matched subsets of a candidate split that the blind baseline tells apart less, or not at all.

What is matched. Each record's out-of-fold P(member) from the blind classifier's features
(`blind_baseline.blind_scores`: word and character n-grams, length, dates, formatting; a
smoother regression than the detector's, PROPENSITY_PENALTY) is its propensity score: what the text
alone says about the set it came from. With it goes the
record's length (log characters), matched on its own so that length, which every
likelihood-based membership score is sensitive to, is balanced whatever the classifier weighed.
Records of the smaller side, in a seeded random order, each take the nearest record of the other
side not yet taken, within a caliper of 0.2 standard deviations on the logit of the propensity
and on log length (Austin 2011); "nearest" is the Euclidean distance over both, each in units of
its standard deviation. 1:1 and without replacement: every kept member has a non-member that
the texts alone make look as much like a member.

Why. A membership score compares members with non-members; where the two sets differ in topic,
period, length or format, the score measures that difference, not the model (Das, Zhang &
Tramèr 2024). Pairs the blind classifier scores alike differ less in what it can see.

The kept subsets are then measured again by a fresh cross-validated blind classifier fitted on
them alone, each pair held in one fold (`after`). The AUROC of the scores matched on is never
reported: matching made them alike by construction, so their AUROC on the kept records is
biased toward 0.5.

Limits:
- matching removes only what the features see; a confound they cannot represent stays, and
  "no confound detected by the blind baseline" is all the re-measurement may say;
- where the sets barely overlap (a marker on every member) little or nothing lies within the
  caliper: such a split needs another non-member set, not matching;
- it shrinks the sets, and every CI later computed on them widens: the counts kept are reported;
- the propensity is estimated on the same records it is used to match; the fresh re-measurement
  is what shows a residual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.engine.blind_baseline import ALPHA, blind_baseline, blind_scores

CALIPER = 0.2  # standard deviations of each matched quantity (Austin 2011)
# The propensity's regression is ten times smoother than the detector's: at the detector's
# penalty rare n-grams carry weight, and a record's out-of-fold estimate of them runs against
# its own label (its fold lacks it), so matching on it paired members that look like
# non-members with non-members that look like members, and the kept sets read well below 0.5
# (0.42-0.47 over four seeds of the planted topic-and-length split in the tests); ten times
# the penalty, the over-correction shrinks but stays: 0.468 (CI 0.449-0.486) on 4,000 + 4,000
# of that split, which `split_reading` would call confounded below 0.45 at larger n.
PROPENSITY_PENALTY = 10 * ALPHA
CLIP = 1e-6  # P(member) kept inside (0, 1) so its logit is finite
# Fewer pairs leave cross-validation folds too small to hold an n-gram vocabulary, and a CI
# too wide to read anything from.
MIN_PAIRS = 10
MATCHED_ON = (
    f"logit of the out-of-fold P(member) of the blind classifier at L2 {PROPENSITY_PENALTY:g}",
    "log characters",
)


@dataclass(frozen=True)
class MatchedSplit:
    """Which records were kept (indices into each input set, ascending) and both measurements."""

    members: list[int]
    nonmembers: list[int]
    before: dict[str, Any]  # the blind baseline on the full sets
    after: dict[str, Any] | None  # a fresh blind baseline on the kept sets (None: too few kept)
    method: dict[str, Any]


def propensity_logit(scores: Sequence[float]) -> np.ndarray:
    """log(p / (1 - p)): distances in it are alike across the range, unlike those in p."""
    p = np.clip(np.asarray(scores, dtype=np.float64), CLIP, 1 - CLIP)
    return np.log(p / (1 - p))


def nearest_pairs(
    treated: np.ndarray, control: np.ndarray, caliper: float, seed: int
) -> list[tuple[int, int]]:
    """Greedy 1:1 nearest-neighbour matching without replacement: (treated, control) indices.

    `treated` (T, D) and `control` (C, D) are in units of each column's standard deviation; a
    pair differs by at most `caliper` in every column. Treated records go in a seeded random
    order (a fixed order would favour one end of the propensity range); candidates are found
    through the control records sorted by the first column, so each look is a window, not a
    scan.
    """
    order = np.argsort(control[:, 0], kind="stable")
    keys = control[order, 0]
    free = np.ones(len(control), dtype=bool)
    pairs = []
    for t in np.random.default_rng(seed).permutation(len(treated)):
        point = treated[t]
        low = np.searchsorted(keys, point[0] - caliper, side="left")
        high = np.searchsorted(keys, point[0] + caliper, side="right")
        window = order[low:high]
        window = window[free[window]]
        gaps = control[window] - point  # (K, D)
        within = (np.abs(gaps) <= caliper).all(axis=1)
        if not within.any():
            continue
        best = window[within][np.argmin(np.sqrt((gaps[within] ** 2).sum(axis=1)))]
        free[best] = False
        pairs.append((int(t), int(best)))
    return pairs


def _standardized(columns: np.ndarray) -> np.ndarray:
    """Each column over its standard deviation (a constant column is left as it is)."""
    spread = columns.std(axis=0)
    return columns / np.where(spread > 0, spread, 1.0)


def match_split(
    member_texts: Sequence[str],
    nonmember_texts: Sequence[str],
    *,
    seed: int = 0,
    bootstrap: int = 1000,
    caliper: float = CALIPER,
) -> MatchedSplit:
    """Measure the split, match it on the blind propensity and length, measure the kept subsets
    again by fresh cross-validation. Deterministic given `seed`."""
    texts = [*member_texts, *nonmember_texts]
    labels = np.r_[np.ones(len(member_texts), bool), np.zeros(len(nonmember_texts), bool)]
    before = blind_baseline(texts, labels, bootstrap=bootstrap, seed=seed)
    propensity = blind_scores(texts, labels, seed, penalty=PROPENSITY_PENALTY)

    lengths = np.log1p([len(text) for text in texts])
    coordinates = _standardized(np.column_stack([propensity_logit(propensity), lengths]))  # (N, 2)
    members, nonmembers = coordinates[labels], coordinates[~labels]
    members_lead = len(member_texts) <= len(nonmember_texts)  # the smaller side picks
    if members_lead:
        pairs = nearest_pairs(members, nonmembers, caliper, seed)
    else:
        pairs = [(m, n) for n, m in nearest_pairs(nonmembers, members, caliper, seed)]
    kept_members = sorted(m for m, _ in pairs)
    kept_nonmembers = sorted(n for _, n in pairs)

    after = None
    if len(pairs) >= MIN_PAIRS:
        kept_texts = [member_texts[m] for m, _ in pairs] + [nonmember_texts[n] for _, n in pairs]
        kept_labels = [True] * len(pairs) + [False] * len(pairs)
        pair_ids = list(range(len(pairs))) * 2  # a pair stays in one fold
        after = blind_baseline(
            kept_texts, kept_labels, bootstrap=bootstrap, seed=seed, groups=pair_ids
        )
    method = {
        "matched_on": list(MATCHED_ON),
        "caliper_sd": caliper,
        "ratio": "1:1, nearest neighbour, without replacement",
        "seed": seed,
        "after": "a fresh cross-validated blind classifier on the kept records alone",
    }
    return MatchedSplit(kept_members, kept_nonmembers, before, after, method)
