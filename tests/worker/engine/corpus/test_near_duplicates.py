"""Near-duplicate clustering against pairs whose true word 5-gram Jaccard is measured with sets."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from worker.engine.corpus.near_duplicates import (
    NearDuplicates,
    build_near_duplicates,
    candidate_probability,
    lsh_parameters,
    shingles,
)

SEED = 29
N_NEAR_PAIRS = 300
N_HARD_PAIRS = 200
N_UNRELATED = 2000


def make_vocabulary(size: int, rng: random.Random) -> list[str]:
    words = {
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9))) for _ in range(size)
    }
    return sorted(words)


def five_grams(words: list[str]) -> set[tuple[str, ...]]:
    lowered = [word.lower() for word in words]
    return {tuple(lowered[i : i + 5]) for i in range(len(lowered) - 4)}


def true_jaccard(a: list[str], b: list[str]) -> float:
    first, second = five_grams(a), five_grams(b)
    return len(first & second) / len(first | second)


def edit_down_to(words: list[str], target: float, vocabulary: list[str], rng: random.Random):
    """Substitute words, each step the largest that keeps J >= target, until none does.

    Edits near either end touch fewer 5-grams, so the reachable J values are finely spaced and the
    final J sits just above the target.
    """
    edited, current = list(words), 1.0
    while True:
        ends = [0, 1, 2, 3, len(words) - 1, len(words) - 2, len(words) - 3, len(words) - 4]
        positions = ends + [rng.randrange(len(words)) for _ in range(6)]
        best = None
        for position in positions:
            candidate = list(edited)
            candidate[position] = rng.choice(vocabulary)
            value = true_jaccard(words, candidate)
            if target <= value < current and (best is None or value < best[0]):
                best = (value, candidate)
        if best is None:
            return edited, current
        current, edited = best


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(SEED)
    vocabulary = make_vocabulary(4000, rng)

    def record() -> list[str]:
        return [rng.choice(vocabulary) for _ in range(rng.randint(150, 250))]

    texts: list[str] = []
    near, hard = [], []
    for pairs, low, high in ((near, 0.9, 1.0), (hard, 0.5, 0.7)):
        for _ in range(N_NEAR_PAIRS if pairs is near else N_HARD_PAIRS):
            original = record()
            edited, jaccard = edit_down_to(original, rng.uniform(low, high), vocabulary, rng)
            # Case and spacing differences must not matter: normalisation removes them.
            texts.append(" ".join(original))
            texts.append("  ".join(word.upper() if rng.random() < 0.1 else word for word in edited))
            pairs.append((len(texts) - 2, len(texts) - 1, jaccard))
    unrelated = list(range(len(texts), len(texts) + N_UNRELATED))
    texts.extend(" ".join(record()) for _ in unrelated)
    order = list(range(len(texts)))
    rng.shuffle(order)  # pairs scattered through the corpus, not adjacent
    position = {old: new for new, old in enumerate(order)}
    shuffled = [texts[old] for old in order]

    def moved(pairs):
        return [(position[a], position[b], j) for a, b, j in pairs]

    directory = build_near_duplicates(shuffled, tmp_path_factory.mktemp("nd") / "index")
    return {
        "texts": shuffled,
        "near": moved(near),
        "hard": moved(hard),
        "unrelated": [position[i] for i in unrelated],
        "index": NearDuplicates.open(directory),
        "directory": directory,
    }


def together(index: NearDuplicates, a: int, b: int) -> bool:
    first, second = index.record(a), index.record(b)
    return first.cluster_id is not None and first.cluster_id == second.cluster_id


def test_generated_pairs_cover_the_intended_jaccard_ranges(corpus):
    near = np.array([j for _, _, j in corpus["near"]])
    hard = np.array([j for _, _, j in corpus["hard"]])
    assert near.min() >= 0.9 and near.max() <= 1.0
    assert 0.3 < np.mean(near < 0.95) < 0.7  # both halves of [0.9, 1] are well represented
    assert hard.min() >= 0.5 and hard.max() < 0.75


def test_recall_of_true_near_duplicates_at_threshold_08(corpus):
    index = corpus["index"]
    found = {(a, b): together(index, a, b) for a, b, _ in corpus["near"]}
    by_bin = {}
    for low, high in ((0.9, 0.95), (0.95, 1.0001)):
        pairs = [(a, b) for a, b, j in corpus["near"] if low <= j < high]
        by_bin["[0.9, 0.95)" if low == 0.9 else "[0.95, 1.0]"] = (
            sum(found[p] for p in pairs) / len(pairs),
            len(pairs),
        )
    overall = sum(found.values()) / len(found)
    print(f"near-duplicate recall: overall {overall:.3f}; by true Jaccard {by_bin}")
    assert overall >= 0.9
    assert all(recall >= 0.9 for recall, _ in by_bin.values())


def test_hard_negatives_are_rarely_clustered(corpus):
    index = corpus["index"]
    clustered = sum(together(index, a, b) for a, b, _ in corpus["hard"]) / len(corpus["hard"])
    print(f"hard negatives (J 0.5-0.7) clustered: {clustered:.3f}")
    assert clustered <= 0.05


def test_unrelated_records_stay_singletons(corpus):
    index = corpus["index"]
    for i in corpus["unrelated"]:
        match = index.record(i)
        assert (match.cluster_id, match.cluster_size, match.partner, match.jaccard) == (
            None,
            1,
            None,
            None,
        )


def test_best_partner_carries_the_exact_jaccard(corpus):
    index = corpus["index"]
    for a, b, jaccard in corpus["near"]:
        match = index.record(a)
        if match.partner == b:
            assert match.jaccard == pytest.approx(jaccard, abs=1e-12)
            assert index.record(b).partner == a


def test_stats_and_clusters_agree_with_the_records(corpus):
    index = corpus["index"]
    stats = index.stats()
    clustered = [i for i in range(len(corpus["texts"])) if index.record(i).cluster_id is not None]
    assert stats["records_in_clusters"] == len(clustered)
    assert (stats["bands"], stats["rows"], stats["threshold"]) == (16, 8, 0.8)
    assert stats["candidate_probability_at_threshold"] == pytest.approx(0.947, abs=1e-3)
    assert sum(int(k) * v for k, v in stats["cluster_size_histogram"].items()) == len(clustered)
    clusters = index.clusters(top=5)
    sizes = [cluster.size for cluster in clusters]
    assert sizes == sorted(sizes, reverse=True)
    for cluster in clusters:
        for member in cluster.members:
            assert index.record(member).cluster_id == cluster.cluster_id


def test_lsh_parameters_favour_recall():
    bands, rows = lsh_parameters(0.8, 128)
    assert (bands, rows) == (16, 8)
    assert candidate_probability(0.9, bands, rows) > 0.999
    assert candidate_probability(0.8, bands, rows) > 0.9


def test_a_lower_threshold_clusters_the_hard_negatives(corpus, tmp_path):
    """The threshold is honoured: at 0.5 the 0.5-0.7 pairs are near duplicates."""
    texts = corpus["texts"]
    hard = corpus["hard"][:60]
    subset = sorted({i for a, b, _ in hard for i in (a, b)})
    local = {old: new for new, old in enumerate(subset)}
    index = NearDuplicates.open(
        build_near_duplicates([texts[i] for i in subset], tmp_path / "low", threshold=0.5)
    )
    recall = sum(together(index, local[a], local[b]) for a, b, _ in hard) / len(hard)
    assert recall >= 0.9


def test_shingles_match_a_set_of_word_five_grams():
    rng = random.Random(3)
    for _ in range(50):
        words = [rng.choice(["a", "b", "c", "dd", "Ee"]) for _ in range(rng.randint(5, 60))]
        assert len(shingles(" ".join(words))) == len(five_grams(words))
    assert np.array_equal(shingles("Ｆｏｏ  BAR\tbaz qux\nquux"), shingles("foo bar baz qux quux"))
    assert not np.array_equal(shingles("foo bar baz qux quux"), shingles("foo bar baz quux qux"))
    assert len(shingles("only three words")) == 1
    assert len(shingles("   ")) == 0


def test_short_copies_cluster_and_empty_records_do_not(tmp_path):
    texts = ["a short line", "A  short LINE", "", "", "another short line"]
    index = NearDuplicates.open(build_near_duplicates(texts, tmp_path / "short"))
    assert index.record(0).cluster_id is not None
    assert index.record(0).cluster_id == index.record(1).cluster_id
    assert [index.record(i).cluster_size for i in (2, 3, 4)] == [1, 1, 1]


def test_persistence_round_trip(corpus, tmp_path):
    directory: Path = corpus["directory"]
    assert sorted(p.suffix for p in directory.iterdir()) == [".json"] + [".npy"] * 6
    assert [p.name for p in directory.parent.iterdir()] == [directory.name]  # no temp dirs left
    reopened = NearDuplicates.open(directory)
    rebuilt = NearDuplicates.open(build_near_duplicates(corpus["texts"], tmp_path / "again"))
    for i in range(0, len(corpus["texts"]), 7):
        assert reopened.record(i) == corpus["index"].record(i) == rebuilt.record(i)
    assert reopened.stats() == rebuilt.stats()
    with pytest.raises(FileExistsError):
        build_near_duplicates(corpus["texts"], directory)


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def texts():
        yield "one two three four five six"
        raise RuntimeError("reader failed")

    with pytest.raises(RuntimeError):
        build_near_duplicates(texts(), tmp_path / "broken")
    assert list(tmp_path.iterdir()) == []
