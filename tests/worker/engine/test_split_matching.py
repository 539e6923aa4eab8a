"""Matching draws subsets the blind baseline no longer tells apart, where the features can see
the difference, and says so where they cannot."""

from __future__ import annotations

import random

import numpy as np

from tests.word_texts import WORDS
from worker.engine.blind_baseline import DELTA
from worker.engine.split_matching import MIN_PAIRS, match_split, nearest_pairs

TOPIC_A, TOPIC_B = WORDS[:12], WORDS[11:]


def _texts(
    n: int, seed: int, share_a: float, words: tuple[int, int], marker: str = ""
) -> list[str]:
    """Sentences from topic A (a share of them) or B, of a word count drawn from `words`."""
    rng = random.Random(seed)
    found = []
    for _ in range(n):
        topic = TOPIC_A if rng.random() < share_a else TOPIC_B
        body = " ".join(rng.choice(topic) for _ in range(rng.randint(*words)))
        found.append(body.capitalize() + marker + ".")
    return found


def test_matching_removes_a_topic_and_length_confound_the_features_see() -> None:
    # Members lean to topic A and run longer; the two overlap, so pairs exist.
    members = _texts(200, 1, share_a=0.7, words=(15, 40))
    nonmembers = _texts(200, 2, share_a=0.3, words=(8, 30))
    found = match_split(members, nonmembers, seed=0, bootstrap=200)
    assert found.before["reading"] == "confounded"
    assert found.before["auroc"]["ci95"][0] > 0.75
    assert found.after is not None and found.after["reading"] == "no_confound_detected"
    low, high = found.after["auroc"]["ci95"]
    assert low <= 0.5 + DELTA
    assert high >= 0.5 - DELTA, "matching over-corrected: the kept sets read the other way"
    kept = len(found.members)
    assert kept == len(found.nonmembers) >= 50  # not a handful whose CI says nothing
    assert found.after["n_members"] == found.after["n_nonmembers"] == kept
    # The kept sets are balanced in what made the split: topic and length.
    kept_m = [members[i] for i in found.members]
    kept_n = [nonmembers[i] for i in found.nonmembers]
    assert (
        abs(_share_a(kept_m) - _share_a(kept_n)) < 0.15 < _share_a(members) - _share_a(nonmembers)
    )
    assert abs(_mean_words(kept_m) - _mean_words(kept_n)) < 2.5


def _share_a(texts: list[str]) -> float:
    return float(np.mean([t.split()[0].lower() in TOPIC_A for t in texts]))


def _mean_words(texts: list[str]) -> float:
    return float(np.mean([len(t.split()) for t in texts]))


def test_a_marker_on_every_member_is_not_matched_away() -> None:
    members = _texts(150, 1, share_a=0.5, words=(12, 30), marker=" — as noted")
    nonmembers = _texts(150, 2, share_a=0.5, words=(12, 30))
    found = match_split(members, nonmembers, seed=0, bootstrap=200)
    assert found.before["reading"] == "confounded"
    assert len(found.members) < 50  # the sets barely overlap: little lies within the caliper
    if found.after is not None:  # whatever was kept still carries the marker
        assert found.after["reading"] == "confounded"


def test_an_iid_split_reads_no_confound_before_and_after() -> None:
    texts = _texts(300, 3, share_a=0.5, words=(12, 30))
    found = match_split(texts[::2], texts[1::2], seed=0, bootstrap=200)
    assert found.before["reading"] == "no_confound_detected"
    assert found.after is not None and found.after["reading"] == "no_confound_detected"


def test_matching_is_deterministic_given_its_seed() -> None:
    members = _texts(80, 5, share_a=0.7, words=(15, 40))
    nonmembers = _texts(100, 6, share_a=0.3, words=(8, 30))
    first = match_split(members, nonmembers, seed=7, bootstrap=50)
    again = match_split(members, nonmembers, seed=7, bootstrap=50)
    assert first == again
    other = match_split(members, nonmembers, seed=8, bootstrap=50)
    assert (other.members, other.nonmembers) != (first.members, first.nonmembers)


def test_pairs_are_nearest_within_the_caliper_and_never_reused() -> None:
    treated = np.array([[0.0, 0.0], [0.05, 0.0], [3.0, 3.0]])
    control = np.array([[0.04, 0.0], [0.1, 0.1], [0.0, 0.5], [5.0, 5.0]])
    pairs = nearest_pairs(treated, control, caliper=0.2, seed=0)
    assert sorted(t for t, _ in pairs) == [0, 1]  # (3, 3) has nothing within 0.2
    assert sorted(c for _, c in pairs) == [0, 1]  # (0, 0.5) is too far in the second column
    for t, c in pairs:
        assert np.abs(treated[t] - control[c]).max() <= 0.2
    # The one taken first got the nearest, (0.04, 0): both want it.
    assert dict(pairs)[pairs[0][0]] == 0


def test_too_few_pairs_are_not_measured() -> None:
    members = _texts(12, 1, share_a=0.5, words=(12, 30), marker=" — as noted")
    nonmembers = _texts(12, 2, share_a=0.5, words=(12, 30))
    found = match_split(members, nonmembers, seed=0, bootstrap=20)
    assert len(found.members) < MIN_PAIRS and found.after is None
