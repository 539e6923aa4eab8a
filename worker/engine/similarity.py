"""How close a generated suffix is to the true one, on token ids (Ippolito et al. 2023).

Every metric reads sequences of the model's token ids, never words, so code, punctuation and
non-Latin text count token for token (a ROUGE package that splits on alphanumerics would drop
them). With g the generated ids and s the true suffix's:

- ROUGE-L: LCS(g, s) as an F1, P = LCS/|g|, R = LCS/|s|, F = 2PR/(P+R) (β = 1, as the
  `rouge_score` package reports it).
- Longest common substring: the longest contiguous run both share, in tokens and as a fraction
  of |s|.
- Edit similarity: 1 − Levenshtein(g, s) / max(|g|, |s|) (unit insert, delete, substitute).
- BLEU: sentence BLEU with n-gram orders 1..N, N = min(4, |g|, |s|), uniform weights, clipped
  counts, brevity penalty exp(1 − |s|/|g|) when |g| < |s|, and Chen & Cherry (2014) smoothing
  method 1: an order with no matching n-gram counts ε = 0.1 matches instead of 0 (NLTK's
  `SmoothingFunction().method1`).
- Spans: the true suffix's token ranges [start, end) that an LCS alignment matches, so the token
  view can highlight what the generation reproduces.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from rapidfuzz.distance import LCSseq, Levenshtein

BLEU_MAX_ORDER = 4
BLEU_EPSILON = 0.1  # Chen & Cherry method 1
METRIC_NAMES = ("rouge_l", "lcs_substring_fraction", "edit_similarity", "bleu")


def lcs_length(generated: Sequence[int], truth: Sequence[int]) -> int:
    """Length of the longest common subsequence."""
    return int(LCSseq.similarity(generated, truth))


def rouge_l(generated: Sequence[int], truth: Sequence[int]) -> float:
    common = lcs_length(generated, truth)
    if common == 0:
        return 0.0
    precision, recall = common / len(generated), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def longest_common_substring(generated: Sequence[int], truth: Sequence[int]) -> tuple[int, int]:
    """(length, start in `truth`) of the longest contiguous run both share; the first such run
    in `truth` on ties. O(|g| + |s|): a suffix automaton of `truth` (Blumer et al. 1985), each
    state knowing where its strings first end, read along `generated` (the textbook matching
    walk, e.g. cp-algorithms' "suffix automaton"; no code carried over)."""
    links, lengths, first_end, moves = _suffix_automaton(truth)
    best, best_end = 0, 0
    state, run = 0, 0
    for token in generated:
        while state and token not in moves[state]:
            state = links[state]
            run = lengths[state]
        if token in moves[state]:
            state, run = moves[state][token], run + 1
        else:
            continue
        # Every string of a state shares its end positions: the run's first end is the state's.
        end = first_end[state] + 1
        if run > best or (run == best and end < best_end):
            best, best_end = run, end
    return best, best_end - best


def _suffix_automaton(
    text: Sequence[int],
) -> tuple[list[int], list[int], list[int], list[dict[int, int]]]:
    """Suffix links, longest lengths, first end positions and transitions of every state."""
    links, lengths, first_end, moves = [-1], [0], [-1], [{}]
    last = 0
    for position, token in enumerate(text):
        current = len(lengths)
        links.append(0)
        lengths.append(lengths[last] + 1)
        first_end.append(position)
        moves.append({})
        state = last
        while state != -1 and token not in moves[state]:
            moves[state][token] = current
            state = links[state]
        if state != -1:
            target = moves[state][token]
            if lengths[state] + 1 == lengths[target]:
                links[current] = target
            else:
                clone = len(lengths)
                links.append(links[target])
                lengths.append(lengths[state] + 1)
                first_end.append(first_end[target])
                moves.append(dict(moves[target]))
                while state != -1 and moves[state].get(token) == target:
                    moves[state][token] = clone
                    state = links[state]
                links[target] = links[current] = clone
        last = current
    links[0] = 0
    return links, lengths, first_end, moves


def edit_similarity(generated: Sequence[int], truth: Sequence[int]) -> float:
    longest = max(len(generated), len(truth))
    if longest == 0:
        return 1.0
    return 1.0 - Levenshtein.distance(generated, truth) / longest


def _ngrams(ids: Sequence[int], n: int) -> Counter[tuple[int, ...]]:
    return Counter(tuple(ids[i : i + n]) for i in range(len(ids) - n + 1))


def bleu(generated: Sequence[int], truth: Sequence[int]) -> float:
    """Sentence BLEU of `generated` against the single reference `truth`, smoothed."""
    order = min(BLEU_MAX_ORDER, len(generated), len(truth))
    if order == 0:
        return 0.0
    log_precision = 0.0
    for n in range(1, order + 1):
        hypothesis, reference = _ngrams(generated, n), _ngrams(truth, n)
        matches = sum(min(count, reference[gram]) for gram, count in hypothesis.items())
        total = len(generated) - n + 1
        log_precision += math.log((matches or BLEU_EPSILON) / total) / order
    brevity = 1.0 if len(generated) >= len(truth) else math.exp(1 - len(truth) / len(generated))
    return brevity * math.exp(log_precision)


def matching_spans(generated: Sequence[int], truth: Sequence[int]) -> list[list[int]]:
    """[start, end) ranges of `truth` that one LCS alignment with `generated` matches."""
    return [
        [op.dest_start, op.dest_end]
        for op in LCSseq.opcodes(generated, truth)
        if op.tag == "equal" and op.dest_end > op.dest_start
    ]


def similarity(generated: Sequence[int], truth: Sequence[int]) -> dict[str, float | int | bool]:
    """Every metric of one generation against the true suffix."""
    substring, _ = longest_common_substring(generated, truth)
    return {
        "rouge_l": rouge_l(generated, truth),
        "lcs_substring": substring,
        "lcs_substring_fraction": substring / len(truth) if truth else 0.0,
        "edit_similarity": edit_similarity(generated, truth),
        "bleu": bleu(generated, truth),
        "verbatim": list(generated) == list(truth),
    }
