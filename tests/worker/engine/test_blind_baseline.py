"""The blind baseline sees a split that differs without the model, and only such a split."""

from __future__ import annotations

import random

import pytest

from tests.word_texts import word_texts
from worker.engine.blind_baseline import (
    DELTA,
    blind_baseline,
    dense_features,
    paired_margin,
    score_reading,
    split_reading,
)


def test_a_split_that_differs_only_by_a_stylistic_marker_is_confounded() -> None:
    members, others = word_texts(150, 1, marker=" — as noted"), word_texts(150, 2)
    report = blind_baseline(members + others, [True] * 150 + [False] * 150, bootstrap=200)
    assert report["auroc"]["ci95"][0] > 0.5 + DELTA
    assert report["reading"] == "confounded"


def test_an_iid_split_shows_no_confound() -> None:
    texts = word_texts(300, 3)
    labels = [i % 2 == 0 for i in range(300)]
    report = blind_baseline(texts, labels, bootstrap=200)
    low, high = report["auroc"]["ci95"]
    assert low <= 0.5 <= high, report["auroc"]
    assert report["reading"] == "no_confound_detected"


def test_years_and_length_are_features() -> None:
    short, dated = dense_features("A line."), dense_features("Written in 2024, on 2024-05-01.")
    assert dated[2] == 2 and dated[4] == 1 and dated[3] == pytest.approx(1.24)
    assert short[0] < dated[0]


@pytest.mark.parametrize(
    ("auroc", "ci", "confounded", "reading"),
    [
        (0.9, [0.85, 0.95], True, "inconclusive"),
        (0.5, [0.45, 0.54], False, "no_membership_signal"),
        (0.8, [0.7, 0.9], False, "stands"),
        (0.58, [0.5, 0.66], False, "underpowered"),
    ],
)
def test_each_score_is_read_against_the_line(auroc, ci, confounded, reading) -> None:  # type: ignore[no-untyped-def]
    assert score_reading(auroc, ci, 400, confounded)["reading"] == reading


def test_an_underpowered_score_says_how_many_records_would_resolve_it() -> None:
    found = score_reading(0.58, [0.5, 0.66], 400, False)
    # Half-width 0.08 at 400 records must shrink to the distance 0.03 from the line.
    assert found["records_needed"] == 2845


def test_the_split_reading_never_claims_no_confound() -> None:
    assert split_reading([0.56, 0.7]) == "confounded"
    assert split_reading([0.55, 0.7]) == "no_confound_detected"
    assert split_reading([None, None]) == "not_assessed"
    # Reliably worse than chance is structure tied to the labels, too (derived non-members).
    assert split_reading([0.02, 0.44]) == "confounded"
    assert split_reading([0.3, 0.46]) == "no_confound_detected"


def test_non_members_derived_from_members_are_caught_below_chance() -> None:
    """Shuffled copies of the members: each held-out record's twin is in the training fold
    with the other label, so the classifier does reliably worse than chance."""
    members = word_texts(60, 4)
    shuffled = []
    rng = random.Random(5)
    for text in members:
        words = text.rstrip(".").lower().split()
        rng.shuffle(words)
        shuffled.append(" ".join(words).capitalize() + ".")
    report = blind_baseline(members + shuffled, [True] * 60 + [False] * 60, bootstrap=200)
    assert report["reading"] == "confounded", report["auroc"]


def test_the_margin_over_the_blind_baseline_is_paired() -> None:
    labels = [True] * 50 + [False] * 50
    blind = [random.Random(i).random() for i in range(100)]
    same = paired_margin(blind, blind, labels, bootstrap=100)
    assert same["value"] == 0 and same["ci95"] == [0.0, 0.0]
    perfect = [1.0 if member else 0.0 for member in labels]
    ahead = paired_margin(perfect, blind, labels, bootstrap=100)
    assert ahead["value"] > 0.3 and ahead["ci95"][0] > 0.2


def test_too_few_of_either_side_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 members and 2 non-members"):
        blind_baseline(["a b", "c d", "e f"], [True, True, False])
