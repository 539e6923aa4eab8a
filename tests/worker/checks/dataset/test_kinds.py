"""The dataset family's kinds through a local audit, each against answers computed here:
near-duplicate clusters, the PII inventory (masked values, recurrences), contamination of an
evaluation set, and masking of every text a duplication summary stores."""

from __future__ import annotations

import json
import random
import unicodedata

import pytest

from core.config import get_settings
from tests.conftest import write_jsonl
from tests.word_texts import WORDS
from worker.local import audit_texts

EMAIL = "jane.roe@example.org"
CARD = "4242 4242 4242 4242"


@pytest.fixture
def local_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMAUDIT_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()  # local audits keep artefacts under the configured data dir
    yield tmp_path / "data"
    get_settings.cache_clear()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def shingle_jaccard(first: str, second: str, n: int = 5) -> float:
    def grams(text: str) -> set[tuple[str, ...]]:
        words = unicodedata.normalize("NFKC", text).casefold().split()
        return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}

    a, b = grams(first), grams(second)
    return len(a & b) / len(a | b)


def test_near_duplicates_cluster_the_planted_pair_only(local_data_dir) -> None:
    rng = random.Random(5)
    texts = [sentence(rng, 80) for _ in range(30)]
    words = texts[0].split()
    words[40] = "CHANGED"  # one word: 5 of 80 shingles differ
    texts.append(" ".join(words))
    assert shingle_jaccard(texts[0], texts[-1]) > 0.85
    result = audit_texts(None, [{"text": t} for t in texts], [{"kind": "near_duplicates"}])
    found = result["near_duplicates"]
    sizes = [s["cluster_size"] for s in found["samples"]]
    assert sizes == [2] + [1] * 29 + [2]
    assert found["samples"][0]["jaccard"] == pytest.approx(shingle_jaccard(texts[0], texts[-1]))
    summary = found["summary"]
    assert summary["n_near_duplicate_records"] == 2 and summary["n_clusters"] == 1
    largest = summary["corpus"]["largest_clusters"]
    assert largest[0]["size"] == 2 and largest[0]["members"] == [0, 30]
    assert summary["corpus"]["threshold"] == 0.8


def test_the_pii_inventory_stores_masks_and_counts_recurrences(local_data_dir) -> None:
    rng = random.Random(7)
    texts = [sentence(rng, 20) for _ in range(12)]
    for i in (1, 4, 9):  # the same address three times, written two ways
        texts[i] += f" write to {EMAIL if i != 4 else EMAIL.upper()} today"
    texts[6] += f" card {CARD} expires soon"
    texts[7] += " card 4242 4242 4242 4241 is not one"  # fails Luhn
    result = audit_texts(None, [{"text": t} for t in texts], [{"kind": "pii"}])
    found = result["pii"]
    counts = [s["pii_count"] for s in found["samples"]]
    assert counts == [0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0]
    assert found["samples"][6]["pii_types"] == ["credit_card"]
    summary = found["summary"]
    assert summary["by_type"]["email"] == {
        "records": 3,
        "occurrences": 3,
        "distinct": 1,
        "recurring": 1,
    }
    assert summary["by_type"]["credit_card"]["occurrences"] == 1
    assert summary["top_recurring"][0]["count"] == 3 and summary["top_recurring"][0]["records"] == 3
    stored = json.dumps(found)
    for raw in (EMAIL, EMAIL.upper(), CARD, CARD.replace(" ", ""), "jane.roe"):
        assert raw not in stored


def test_duplication_masks_the_spans_and_examples_it_stores(local_data_dir) -> None:
    rng = random.Random(9)
    shared = f"contact {EMAIL} or pay with {CARD} before noon"
    texts = [sentence(rng, 15) + " " + shared + " " + sentence(rng, 5) for _ in range(3)]
    texts += [texts[0], sentence(rng, 30)]
    result = audit_texts(None, [{"text": t} for t in texts], [{"kind": "duplication"}])
    found = result["duplication"]
    assert [s["duplicates"] for s in found["samples"]] == [2, 1, 1, 2, 1]
    assert all(s["span_bytes"] >= len(shared) for s in found["samples"][:4])
    stored = json.dumps(found)
    assert "@example.org" not in stored and "4242 4242 4242 4242" not in stored
    assert "***" in found["samples"][1]["span_text"]


def test_contamination_of_an_evaluation_set(local_data_dir, tmp_path) -> None:
    rng = random.Random(11)
    corpus = [sentence(rng, 60) for _ in range(40)]
    planted = " ".join(corpus[3].split()[10:23])  # one 13-word run of a corpus record
    twelve = " ".join(corpus[5].split()[0:12])  # twelve words: below n
    fresh = [" ".join(f"novel{rng.randrange(10**6)}" for _ in range(30)) for _ in range(3)]
    evaluation = [corpus[0], f"{fresh[0]} {planted} {fresh[1]}", f"{fresh[2]} {twelve} end"]
    corpus_file = write_jsonl(tmp_path / "corpus.jsonl", [{"text": t} for t in corpus])
    result = audit_texts(
        None,
        [{"text": t} for t in evaluation],
        [{"kind": "contamination", "params": {"corpus": f"path:{corpus_file}"}}],
    )
    found = result["contamination"]
    rows = found["samples"]
    assert [r["contaminated"] for r in rows] == [True, True, False]
    assert rows[0]["n_found"] == rows[0]["n_ngrams"] == 60 - 13 + 1
    assert rows[1]["n_found"] == 1
    assert rows[0]["longest_match_bytes"] == len(corpus[0].encode())
    assert rows[1]["longest_match_bytes"] >= len(planted)
    summary = found["summary"]
    assert summary["n_contaminated"] == 2 and summary["contaminated_share"] == pytest.approx(2 / 3)
    assert summary["corpus"]["n"] == 13


def luhn_complete(digits: str) -> str:
    """The digits with the Luhn check digit appended (computed here, not by the code)."""
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return digits + str((10 - total % 10) % 10)


def test_a_shared_span_that_cuts_a_value_is_stored_masked_whole(local_data_dir) -> None:
    """Two records share text up to the middle of a card number: the span alone no longer
    looks like a card, so masking the span by itself would store 12 raw digits."""
    first, second = luhn_complete("453914880343646"), luhn_complete("453914880343981")
    assert first[:12] == second[:12] and first != second
    group = " ".join(first[i : i + 4] for i in range(0, 16, 4))
    other = " ".join(second[i : i + 4] for i in range(0, 16, 4))
    lead = "the customer paid the annual invoice with card number"
    texts = [f"{lead} {group} and left", f"{lead} {other} then called", "unrelated words only"]
    result = audit_texts(None, [{"text": t} for t in texts], [{"kind": "duplication"}])
    found = result["duplication"]
    assert found["samples"][0]["span_bytes"] == len(f"{lead} {group[:15]}")
    stored = json.dumps(found)
    assert group[:14] not in stored and first[:12] not in stored
    assert "****" in found["samples"][0]["span_text"]
