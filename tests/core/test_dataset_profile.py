"""The bounded pass over a policy's dataset, and the one-token-per-byte bound it rests on."""

from __future__ import annotations

import json

import pytest

from core.dataset_profile import max_tokens, profile_dataset
from tests.conftest import write_jsonl
from worker.checks.lm.labels import read_record
from worker.demo import build_tokenizer, make_corpus

AWKWARD = [
    "a",
    "1",
    " ",
    "  leading spaces",
    "2023-11-05 12:00",
    "naïve café — déjà vu",
    "日本語のテキスト",
    "emoji 🙂🙃 and ZWJ 👩‍👩‍👧",
    "\t\n\r tabs",
    "x" * 300,
]


def test_a_byte_level_tokenizer_never_makes_more_tokens_than_the_bound() -> None:
    """The demo model's byte-level BPE, on texts it was and was not trained on."""
    corpus = make_corpus(24, 24, 0)
    tokenizer = build_tokenizer(corpus.members + corpus.nonmembers)
    for text in corpus.members + AWKWARD:
        n_tokens = len(tokenizer.encode(text, add_special_tokens=False))
        assert n_tokens <= max_tokens(len(text.encode("utf-8"))), text


def test_the_pass_parses_the_first_records_and_bounds_the_rest(tmp_path) -> None:
    records = [
        {"id": "a", "text": "é" * 10, "member": True},  # 20 bytes
        {"id": "b", "member": False},
        {"id": "c", "text": "tiny", "member": "yes"},
        {"id": "d", "text": "x" * 50},
        {"id": "e", "text": "y" * 8},
    ]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    path.write_text(path.read_text().replace("\n", "\n\n", 1))  # blank lines are not records
    profile = profile_dataset(path, 5, ["text"], {"loss": read_record}, max_parsed=3)
    assert (profile.n_records, profile.n_parsed, profile.complete) == (5, 3, False)
    assert profile.missing == {"text": 1} and profile.first_missing_line == {"text": 3}
    assert profile.members == {"true": 1, "false": 1, "absent": 0}
    # The LM kinds' own reader: the record without a text is the first it refuses.
    assert profile.unreadable == {"loss": 2}
    assert profile.first_unreadable == {"loss": "line 3: field 'text' must be a string"}
    assert list(profile.text.parsed) == [4, 20]
    # Past the parsed records only line lengths are known: the longest line bounds them.
    longest_line = len(json.dumps(records[3]))
    assert profile.text.longest == longest_line
    assert profile.text.shorter_than(21) == 2
    assert profile.text.shorter_than(longest_line + 1) == 4
    assert profile.text.fewer_tokens_than(6) == 1  # "tiny": 4 bytes, at most 5 tokens


@pytest.mark.parametrize("n_parsed", [1, 100])
def test_counts_are_exact_once_every_record_is_parsed(tmp_path, n_parsed) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "ab"}, {"text": "abcd"}])
    profile = profile_dataset(path, 2, ["text"], max_parsed=n_parsed)
    assert profile.complete is (n_parsed == 100)
    assert profile.text.shorter_than(4) == 1
    assert profile.text.shorter_than(5) == (2 if n_parsed == 100 else 1)
