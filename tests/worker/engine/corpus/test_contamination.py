"""13-gram contamination against a brute-force Python set of the corpus's word 13-grams."""

from __future__ import annotations

import functools
import random

import pytest

from worker.engine.corpus.contamination import (
    NgramSet,
    build_ngram_set,
    contamination_rows,
    contamination_summary,
    contamination_words,
)
from worker.engine.corpus.near_duplicates import word_ngram_hashes
from worker.engine.distributions import wilson_interval

N = 13
PER_KIND = 40


def words_of(rng: random.Random, prefix: str, size: int) -> list[str]:
    return [prefix + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=6)) for _ in range(size)]


def as_text(words: list[str], rng: random.Random) -> str:
    """A sentence: capitals, commas and a full stop that normalisation must see through."""
    shown = [
        w.capitalize() if rng.random() < 0.2 else w + "," if rng.random() < 0.1 else w
        for w in words
    ]
    return " ".join(shown) + "."


def plain_words(text: str) -> list[str]:
    """The test's own normaliser for these texts: lower case, strip the commas and stops."""
    return [word.strip(".,").lower() for word in text.split()]


def brute_ngrams(words: list[str]) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + N]) for i in range(len(words) - N + 1)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    rng = random.Random(13)
    corpus_vocabulary = words_of(rng, "c", 3000)
    # Fresh records draw from a disjoint vocabulary, so no n-gram can arise from them by chance.
    fresh_vocabulary = words_of(rng, "f", 3000)
    corpus_words = [rng.choices(corpus_vocabulary, k=rng.randint(40, 120)) for _ in range(1500)]
    corpus = [as_text(words, rng) for words in corpus_words]

    def planted(run: int) -> list[str]:
        source = rng.choice(corpus_words)
        start = rng.randrange(len(source) - run + 1)
        fresh = rng.choices(fresh_vocabulary, k=rng.randint(20, 60))
        cut = rng.randrange(len(fresh) + 1)
        return fresh[:cut] + source[start : start + run] + fresh[cut:]

    kinds = {
        "copied": [rng.choice(corpus_words) for _ in range(PER_KIND)],
        "planted_13": [planted(13) for _ in range(PER_KIND)],
        "run_12": [planted(12) for _ in range(PER_KIND)],
        "fresh": [rng.choices(fresh_vocabulary, k=rng.randint(20, 60)) for _ in range(PER_KIND)],
        "short_fresh": [rng.choices(fresh_vocabulary, k=8) for _ in range(5)],
    }
    evaluation, kind_of = [], []
    for kind, records in kinds.items():
        evaluation.extend(as_text(words, rng) for words in records)
        kind_of.extend([kind] * len(records))
    # Short records copied byte for byte: only the whole-record rule can call them contaminated.
    for _ in range(5):
        evaluation.append(" ".join(rng.choice(corpus).split()[3:9]))
        kind_of.append("short_copied")
    directory = build_ngram_set(corpus, tmp_path_factory.mktemp("ngrams") / "set", n=N)
    return {
        "corpus": corpus,
        "evaluation": evaluation,
        "kind_of": kind_of,
        "corpus_ngrams": {g for text in corpus for g in brute_ngrams(plain_words(text))},
        "ngram_set": NgramSet.open(directory),
    }


def brute_overlap(text: str, corpus_ngrams: set) -> tuple[int, int]:
    ngrams = brute_ngrams(plain_words(text))
    return len(ngrams), sum(g in corpus_ngrams for g in ngrams)


def test_the_set_holds_exactly_the_corpus_ngrams(setup):
    assert len(setup["ngram_set"]) == len(setup["corpus_ngrams"])
    assert setup["ngram_set"].n == N


def test_every_overlap_count_matches_brute_force(setup):
    ngram_set, corpus_ngrams = setup["ngram_set"], setup["corpus_ngrams"]
    for text in setup["evaluation"]:
        n_ngrams, n_found = brute_overlap(text, corpus_ngrams)
        overlap = ngram_set.overlap(text)
        assert (overlap.n_ngrams, overlap.n_found) == (n_ngrams, n_found), text
        if n_ngrams:
            assert overlap.fraction == n_found / n_ngrams
            assert overlap.contaminated == (n_found > 0)
        else:
            assert overlap.fraction is None and overlap.contaminated is None


def test_each_kind_of_record_is_judged_as_planted(setup):
    overlaps = setup["ngram_set"].overlaps(setup["evaluation"])
    by_kind: dict[str, list] = {}
    for kind, overlap in zip(setup["kind_of"], overlaps, strict=True):
        by_kind.setdefault(kind, []).append(overlap)
    assert all(o.fraction == 1.0 for o in by_kind["copied"])
    assert all(o.n_found == 1 and o.contaminated for o in by_kind["planted_13"])
    assert all(o.n_found == 0 and o.contaminated is False for o in by_kind["run_12"])
    assert all(o.n_found == 0 and o.contaminated is False for o in by_kind["fresh"])
    assert all(o.contaminated is None for o in by_kind["short_copied"] + by_kind["short_fresh"])


def brute_longest_match(corpus_text: str):
    """Longest substring of `text` found in the corpus, and how often it occurs there."""

    def longest_match(text: str) -> tuple[int, int]:
        best = ""
        for start in range(len(text)):
            end = start + len(best) + 1
            while end <= len(text) and text[start:end] in corpus_text:
                best, end = text[start:end], end + 1
        count = sum(corpus_text.startswith(best, i) for i in range(len(corpus_text))) if best else 0
        return len(best.encode("utf-8")), count

    return longest_match


def test_rows_and_summary(setup):
    evaluation, kind_of = setup["evaluation"], setup["kind_of"]
    chosen = [i for i, kind in enumerate(kind_of) if kind.startswith("short") or i % 20 == 0]
    texts = [evaluation[i] for i in chosen]
    longest_match = functools.cache(brute_longest_match("\n".join(setup["corpus"])))
    rows = contamination_rows(texts, setup["ngram_set"], longest_match)
    for row, text, i in zip(rows, texts, chosen, strict=True):
        n_bytes, count = longest_match(text)
        assert (row["longest_match_bytes"], row["longest_match_count"]) == (n_bytes, count)
        if kind_of[i].startswith("short"):  # too short for an n-gram: unjudged, even copied
            assert row["contaminated"] is None
    expected = [
        n_found > 0
        for t in texts
        for n_ngrams, n_found in [brute_overlap(t, setup["corpus_ngrams"])]
        if n_ngrams
    ]
    summary = contamination_summary(rows)
    assert summary["n_judged"] == len(expected) < len(texts)
    assert summary["n_contaminated"] == sum(expected)
    assert summary["contaminated_share"] == sum(expected) / len(expected)
    assert summary["contaminated_share_interval"] == wilson_interval(sum(expected), len(expected))
    fractions = [f / n for n, f in (brute_overlap(t, setup["corpus_ngrams"]) for t in texts) if n]
    assert summary["mean_overlap_fraction"] == pytest.approx(sum(fractions) / len(fractions))

    without_spans = contamination_summary(contamination_rows(texts, setup["ngram_set"]))
    assert without_spans["n_unjudged"] == sum(kind_of[i].startswith("short") for i in chosen)
    assert without_spans["mean_longest_match_bytes"] is None


def test_normalisation_sees_through_case_punctuation_and_width():
    assert contamination_words("Don't STOP, Ｕ.Ｓ.  now_here!") == ["dont", "stop", "us", "nowhere"]


def test_hashes_do_not_depend_on_batching(setup):
    texts = setup["evaluation"][:50]
    word_lists = [contamination_words(t) for t in texts]
    together, offsets = word_ngram_hashes(word_lists, N, whole_if_short=False)
    for words, start, end in zip(word_lists, offsets[:-1], offsets[1:], strict=True):
        alone, _ = word_ngram_hashes([words], N, whole_if_short=False)
        assert together[start:end].tolist() == alone.tolist()


def test_an_empty_corpus_finds_nothing(tmp_path):
    ngram_set = NgramSet.open(build_ngram_set([], tmp_path / "empty"))
    assert len(ngram_set) == 0
    assert ngram_set.overlap(" ".join(["word"] * 20)).contaminated is False
