"""Token-id similarities (worker/engine/similarity.py) against plain dynamic programmes and
hand-computed cases; rapidfuzz does the fast work, these say it does the right work."""

from __future__ import annotations

import math
import random

import pytest

from worker.demo import build_tokenizer
from worker.engine.similarity import (
    bleu,
    edit_similarity,
    lcs_length,
    longest_common_substring,
    matching_spans,
    rouge_l,
    similarity,
)


def plain_lcs(a: list[int], b: list[int]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def plain_levenshtein(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        previous, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            current = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] != b[j - 1]))
            previous = current
    return row[-1]


def brute_substring(a: list[int], b: list[int]) -> int:
    best = 0
    for i in range(len(a)):
        for j in range(len(b)):
            k = 0
            while i + k < len(a) and j + k < len(b) and a[i + k] == b[j + k]:
                k += 1
            best = max(best, k)
    return best


def random_pairs(n: int = 300) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(7)
    pairs = []
    for _ in range(n):
        vocab = rng.choice([2, 4, 50_000])
        truth = [rng.randrange(vocab) for _ in range(rng.randint(1, 30))]
        generated = list(truth)
        for _ in range(rng.randint(0, 6)):  # edits keep the pair related, as memorization does
            op = rng.choice(["sub", "ins", "del"])
            at = rng.randrange(len(generated) + 1)
            if op == "ins" or not generated:
                generated.insert(at, rng.randrange(vocab))
            elif op == "sub":
                generated[min(at, len(generated) - 1)] = rng.randrange(vocab)
            else:
                del generated[min(at, len(generated) - 1)]
        if rng.random() < 0.2:
            generated = [rng.randrange(vocab) for _ in range(rng.randint(1, 30))]
        pairs.append((generated, truth))
    return pairs


def test_lcs_edit_and_substring_equal_plain_dynamic_programmes() -> None:
    for generated, truth in random_pairs():
        common = plain_lcs(generated, truth)
        assert lcs_length(generated, truth) == common
        distance = plain_levenshtein(generated, truth)
        assert edit_similarity(generated, truth) == pytest.approx(
            1 - distance / max(len(generated), len(truth))
        )
        assert longest_common_substring(generated, truth)[0] == brute_substring(generated, truth)
        expected = 0.0 if common == 0 else 2 * common / (len(generated) + len(truth))
        assert rouge_l(generated, truth) == pytest.approx(expected)


def plain_substring_table(a: list[int], b: list[int]) -> tuple[int, int]:
    """The O(|a|·|b|) table the automaton replaced: (length, first start in b on ties)."""
    best, best_end = 0, 0
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0] * (len(b) + 1)
        for j, other in enumerate(b, start=1):
            if token == other:
                current[j] = previous[j - 1] + 1
                if current[j] > best or (current[j] == best and j < best_end):
                    best, best_end = current[j], j
        previous = current
    return best, best_end - best


def test_substring_and_its_start_equal_the_plain_table_on_ties_too() -> None:
    rng = random.Random(11)
    pairs = random_pairs() + [
        (
            [rng.randrange(3) for _ in range(rng.randint(0, 40))],
            [rng.randrange(3) for _ in range(rng.randint(0, 40))],
        )
        for _ in range(2000)
    ]
    for generated, truth in pairs:
        assert longest_common_substring(generated, truth) == plain_substring_table(generated, truth)


def test_substring_is_linear_not_a_table() -> None:
    """Suffixes may be 131,072 tokens: a table takes |g|·|s| steps (here 4e7, about ten
    seconds in Python), the automaton |g| + |s| (here about 0.03 s)."""
    import time

    truth = list(range(20_000))
    generated = [*truth[:1000], -1, *truth[5_000:6_000]]
    started = time.perf_counter()
    assert longest_common_substring(generated, truth) == (1000, 0)
    assert time.perf_counter() - started < 2


def test_substring_start_points_at_the_run_in_the_truth() -> None:
    length, start = longest_common_substring([9, 4, 5, 6, 9], [1, 2, 4, 5, 6, 3])
    assert (length, start) == (3, 2)


def test_spans_are_an_lcs_alignment_of_the_truth() -> None:
    for generated, truth in random_pairs():
        spans = matching_spans(generated, truth)
        covered = [j for start, end in spans for j in range(start, end)]
        assert len(covered) == plain_lcs(generated, truth)
        assert covered == sorted(set(covered))  # disjoint, in order
        # The matched tokens of the truth, read in order, are a subsequence of the generation.
        it = iter(generated)
        assert all(any(token == truth[j] for token in it) for j in covered)


def test_spans_of_one_substitution() -> None:
    assert matching_spans([1, 2, 3, 9, 5, 6], [1, 2, 3, 4, 5, 6]) == [[0, 3], [4, 6]]


def test_bleu_hand_computed_with_method_one_smoothing() -> None:
    # Precisions 6/7, 4/6, 2/5 and 0/4 -> 0.1/4 (Chen & Cherry method 1); lengths equal: BP = 1.
    generated, truth = [1, 2, 3, 9, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7]
    expected = (6 / 7 * 4 / 6 * 2 / 5 * 0.1 / 4) ** 0.25
    assert bleu(generated, truth) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.274942, abs=1e-6)


def test_bleu_brevity_penalty_and_identity() -> None:
    assert bleu([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]) == pytest.approx(1.0)
    # Every n-gram of the shorter generation matches: only the brevity penalty remains.
    assert bleu([1, 2, 3, 4], [1, 2, 3, 4, 5, 6]) == pytest.approx(math.exp(1 - 6 / 4))
    # Repeats are clipped to their count in the truth: unigram precision 1/4.
    assert bleu([7, 7, 7, 7], [7, 1, 2, 3]) == pytest.approx(
        (1 / 4 * 0.1 / 3 * 0.1 / 2 * 0.1 / 1) ** 0.25
    )


def test_one_token_changed_in_a_long_suffix_stays_above_the_paper_bar() -> None:
    truth = list(range(100, 150))
    generated = list(truth)
    generated[25] = 7
    found = similarity(generated, truth)
    assert not found["verbatim"]
    assert found["bleu"] > 0.75 and found["rouge_l"] == pytest.approx(0.98)
    assert found["edit_similarity"] == pytest.approx(0.98)
    assert found["lcs_substring"] == 25 and found["lcs_substring_fraction"] == 0.5


@pytest.mark.parametrize(
    ("truth", "changed"),
    [
        ("def f(x):\n    return x[0] + 1  # -> int", "def f(x):\n    return x[0] - 1  # -> int"),
        ("我们的秘密口令是七三九，请记住。", "我们的秘密口令是七三八，请记住。"),
    ],
)
def test_code_and_non_latin_text_count_token_for_token(truth: str, changed: str) -> None:
    """A change in an operator or a CJK character lowers every metric; a ROUGE that drops
    non-alphanumeric characters would call the code pair identical."""
    tokenizer = build_tokenizer([truth, changed] * 4, vocab_size=300)
    truth_ids = tokenizer(truth, add_special_tokens=False)["input_ids"]
    changed_ids = tokenizer(changed, add_special_tokens=False)["input_ids"]
    found = similarity(changed_ids, truth_ids)
    same = similarity(truth_ids, truth_ids)
    assert same["verbatim"] and same["bleu"] == pytest.approx(1.0)
    assert not found["verbatim"]
    for metric in ("rouge_l", "edit_similarity", "bleu", "lcs_substring_fraction"):
        assert 0 < found[metric] < 1, metric
