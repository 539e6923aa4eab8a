"""The exact index against brute force: every count, span and share recomputed by plain Python."""

import random
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from worker.engine.corpus import exact
from worker.engine.corpus.exact import ExactIndex, build_index, normalise

WORDS = ["the", "cat", "sat", "on", "mat", "café", "naïve", "日本語", "🙂", "a", "b", "Über", "x"]


def word_starts(texts: list[str]) -> list[np.ndarray]:
    """Stand-in tokenizer: a token starts at each whitespace-separated word."""
    return [np.array([m.start() for m in re.finditer(rb"\S+", t.encode())]) for t in texts]


def occurrences(corpus: list[bytes], pattern: bytes) -> int:
    """Overlapping occurrences inside records."""
    total = 0
    for record in corpus:
        at = record.find(pattern)
        while at >= 0:
            total += 1
            at = record.find(pattern, at + 1)
    return total


def substring_tables(corpus: list[bytes]):
    """Per length L: substring -> records holding it, and substring -> occurrences."""
    longest = max((len(r) for r in corpus), default=0)
    for length in range(1, longest + 1):
        holders: dict[bytes, set[int]] = {}
        counts: Counter[bytes] = Counter()
        for record, data in enumerate(corpus):
            for start in range(len(data) - length + 1):
                piece = data[start : start + length]
                holders.setdefault(piece, set()).add(record)
                counts[piece] += 1
        yield length, holders, counts


def contexts(corpus: list[bytes], pattern: bytes) -> tuple[set, set]:
    """The bytes just before and just after each occurrence (None at a record's edge)."""
    before, after = set(), set()
    for record in corpus:
        at = record.find(pattern)
        while at >= 0:
            before.add(record[at - 1] if at else None)
            stop = at + len(pattern)
            after.add(record[stop] if stop < len(record) else None)
            at = record.find(pattern, at + 1)
    return before, after


def is_maximal(corpus: list[bytes], pattern: bytes) -> bool:
    """No longer span holding `pattern` occurs as often: growing it by one byte on either side
    loses an occurrence, which holds unless every occurrence has the same byte there."""
    before, after = contexts(corpus, pattern)
    return (len(before) > 1 or None in before) and (len(after) > 1 or None in after)


def maximal_repeats(corpus: list[bytes], min_bytes: int) -> list[tuple[int, int, bytes]]:
    """Every maximal span of >= min_bytes seen >= 2 times, as (-count, -length, bytes), sorted."""
    spans = set()
    for length, _, counts in substring_tables(corpus):
        if length >= min_bytes:
            spans.update(piece for piece, count in counts.items() if count >= 2)
    return sorted(
        (-occurrences(corpus, piece), -len(piece), piece)
        for piece in spans
        if is_maximal(corpus, piece)
    )


def brute_force(corpus: list[bytes], min_tokens: int):
    """Longest span each record shares with another record, and the bytes in repeated spans."""
    shared = [0] * len(corpus)
    repeat = [[0] * len(data) for data in corpus]  # longest prefix at each byte seen >= 2 times
    for length, holders, counts in substring_tables(corpus):
        for record, data in enumerate(corpus):
            for start in range(len(data) - length + 1):
                piece = data[start : start + length]
                if len(holders[piece]) > 1 or record not in holders[piece]:
                    shared[record] = length
                if counts[piece] >= 2:
                    repeat[record][start] = length
    covered = 0
    for record, data in enumerate(corpus):
        token_starts = {m.start() for m in re.finditer(rb"\S+", data)}
        mask = [False] * len(data)
        for start, length in enumerate(repeat[record]):
            if sum(start <= t < start + length for t in token_starts) >= min_tokens:
                mask[start : start + length] = [True] * length
        covered += sum(mask)
    total = sum(len(d) for d in corpus)
    return shared, covered / total


def random_corpus(seed: int, n_records: int) -> list[str]:
    rng = random.Random(seed)
    phrases = [" ".join(rng.choices(WORDS, k=8)) for _ in range(6)]
    texts = []
    for _ in range(n_records):
        kind = rng.random()
        if kind < 0.1 and texts:
            texts.append(rng.choice(texts))  # exact duplicate
        elif kind < 0.15 and texts:
            texts.append("  " + rng.choice(texts).upper() + " ")  # normalised duplicate
        elif kind < 0.25:
            phrase = rng.choice(phrases)
            texts.append(" ".join(rng.choices(WORDS, k=3)) + " " + phrase)  # shared span
        elif kind < 0.3:
            phrase = "".join(rng.choices("qwzjk", k=12))
            texts.append(phrase + " " + phrase)  # repeats only within itself
        elif kind < 0.33:
            texts.append(rng.choice(["", "z", "é", " "]))
        else:
            texts.append(" ".join(rng.choices(WORDS, k=rng.randint(1, 10))))
    return [*texts, "", "", "Y"]  # empty records, and a one-byte record found nowhere else


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    texts = random_corpus(seed=7, n_records=200)
    path = build_index(
        texts,
        tmp_path_factory.mktemp("exact") / "index",
        token_starts=word_starts,
        min_repeat_tokens=3,
        top_spans=5,
        min_span_tokens=4,
    )
    return texts, ExactIndex.open(path)


def test_record_matches_equal_brute_force(built) -> None:
    texts, index = built
    corpus = [t.encode() for t in texts]
    shared, _ = brute_force(corpus, min_tokens=3)
    normalised = Counter(
        " ".join(unicodedata.normalize("NFKC", t).casefold().split()) for t in texts
    )
    matches = index.record_matches(range(len(texts)))
    assert any(m.span_bytes == 0 for m in matches) and max(shared) > 20
    for record, match in enumerate(matches):
        data = corpus[record]
        norm = " ".join(unicodedata.normalize("NFKC", texts[record]).casefold().split())
        assert match.record_count == normalised[norm]
        assert match.span_bytes == shared[record], record
        assert match.span_stop - match.span_start == match.span_bytes
        if match.span_bytes:
            span = data[match.span_start : match.span_stop]
            assert any(span in other for r, other in enumerate(corpus) if r != record)
            assert match.span_count == occurrences(corpus, span) >= 2
            token_starts = [m.start() for m in re.finditer(rb"\S+", data)]
            assert match.span_tokens == sum(
                match.span_start <= t < match.span_stop for t in token_starts
            )
        else:
            assert match.span_count == 0


def test_corpus_stats_equal_brute_force(built) -> None:
    texts, index = built
    corpus = [t.encode() for t in texts]
    _, share = brute_force(corpus, min_tokens=3)
    stats = index.corpus_stats()
    normalised = Counter(
        " ".join(unicodedata.normalize("NFKC", t).casefold().split()) for t in texts
    )
    histogram = Counter(normalised[normalise(t)] for t in texts)
    assert stats.duplicate_histogram == dict(histogram)
    assert stats.repeated_bytes_share == pytest.approx(share, abs=1e-12)
    assert 0 < share < 1
    assert stats.n_records == len(texts) and stats.n_bytes == sum(map(len, corpus))
    assert len(stats.top_spans) == 5
    ranking = [(span.count, span.n_bytes) for span in stats.top_spans]
    assert ranking == sorted(ranking, reverse=True)
    for span in stats.top_spans:
        data = corpus[span.record][span.start : span.start + span.n_bytes]
        assert span.text == data.decode(errors="replace")
        assert span.count == occurrences(corpus, data) >= 2
        assert is_maximal(corpus, data)
        token_starts = [m.start() for m in re.finditer(rb"\S+", corpus[span.record])]
        assert span.n_tokens == sum(
            span.start <= t < span.start + span.n_bytes for t in token_starts
        )
        assert span.n_tokens >= 4


def test_count_and_longest_match_equal_brute_force(built) -> None:
    texts, index = built
    corpus = [t.encode() for t in texts]
    rng = random.Random(3)
    queries = []
    for _ in range(150):
        data = rng.choice([d for d in corpus if d])
        start = rng.randrange(len(data))
        queries.append(data[start : start + rng.randint(1, 30)])
    for record in range(40):  # the end of one record and the start of the next
        queries.append(corpus[record][-3:] + corpus[record + 1][:3])
    queries += [b"zzzz", "日本".encode(), "🙂 ".encode(), b"\xff", b"cat\xffsat"]
    for query in queries:
        if query:
            assert index.count(query) == occurrences(corpus, query), query
    for query in queries[:60] + queries[150:]:
        found = 0, 0
        for length in range(len(query), 0, -1):
            counts = [
                occurrences(corpus, query[s : s + length]) for s in range(len(query) - length + 1)
            ]
            if max(counts) > 0:
                found = length, max(counts)
                break
        assert index.longest_match(query) == found, query
    assert index.count("cat") == occurrences(corpus, b"cat")


def test_planted_corpus_known_answers(tmp_path: Path) -> None:
    rng = random.Random(11)
    filler = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyzé ", k=rng.randint(40, 80)))
        for _ in range(50)
    ]
    planted = "the planted shared passage of sixty bytes, ünïcode included!"
    repeated_inside = "QQQ inner echo QQQ"
    texts = [
        *filler,
        "Hello  World",
        "hello world",
        " HELLO WORLD ",  # normalised-equal, byte-different: count 3
        *["exact copy"] * 5,
        "left side 1 " + planted + " right 1",
        "other left 2 " + planted + " other right 2",
        repeated_inside + "|" + repeated_inside,
        "",
        "Z",
    ]
    path = build_index(texts, tmp_path / "index")
    index = ExactIndex.open(path)
    match = {i: m for i, m in enumerate(index.record_matches(range(len(texts))))}
    base = len(filler)
    assert [match[base + i].record_count for i in range(3)] == [3, 3, 3]
    assert [match[base + 3 + i].record_count for i in range(5)] == [5] * 5
    assert all(
        m.span_count == 5 and m.span_bytes == len("exact copy")
        for i, m in match.items()
        if base + 3 <= i < base + 8
    )
    left = match[base + 8]
    assert left.span_bytes >= len(planted.encode()) and left.span_count == 2
    assert match[base + 9].span_bytes == left.span_bytes
    assert planted in index.text_of(base + 8, left.span_start, left.span_stop)
    assert index.count(planted) == 2
    echo = match[base + 10]
    assert echo.span_bytes < len(repeated_inside)  # a repeat within one record is not shared
    assert index.count(repeated_inside) == 2
    assert match[base + 11] == match[base + 11].__class__(1, 0, None, 0, 0, 0)
    assert match[base + 12].record_count == 1 and match[base + 12].span_tokens is None
    assert index.corpus_stats().repeated_bytes_share is None
    assert index.text_of(base + 8, 0, 9) == "left side"


def byte_corpus(seed: int) -> list[str]:
    """Few letters, so spans repeat at every length, overlap (runs of "a") and cut "é" in two."""
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(150):
        if texts and rng.random() < 0.15:
            texts.append(rng.choice(texts))
        else:
            texts.append("".join(rng.choices("aab é", k=rng.randint(0, 24))))
    return texts


@pytest.mark.parametrize("small_steps", [False, True])
def test_top_spans_equal_brute_force_maximal_repeats(
    tmp_path: Path, monkeypatch, small_steps: bool
) -> None:
    if small_steps:  # chunk, query and batch boundaries fall inside intervals
        monkeypatch.setattr(exact, "_CHUNK", 37)
        monkeypatch.setattr(exact, "_QUERY_BATCH", 5)
        monkeypatch.setattr(exact, "_SPAN_BATCH", 3)
        monkeypatch.setattr(exact, "_FIRST_LEAST_COUNT", 40)
    texts = byte_corpus(seed=4)
    corpus = [t.encode() for t in texts]
    expected = maximal_repeats(corpus, min_bytes=3)
    assert len(expected) > 100 and expected[0][0] < -50  # the test has material to rank
    for limit in (1, 7, len(expected) + 10):
        path = build_index(texts, tmp_path / f"index-{limit}", top_spans=limit, min_span_bytes=3)
        spans = ExactIndex.open(path).corpus_stats().top_spans
        found = []
        for span in spans:
            data = corpus[span.record][span.start : span.start + span.n_bytes]
            assert span.text == data.decode(errors="replace") and span.n_tokens is None
            found.append((-span.count, -span.n_bytes, data))
        assert found == expected[:limit]


def test_planted_boilerplate_is_the_top_span(tmp_path: Path) -> None:
    """A sentence in 125 records is listed once, whole, with its count; spans more frequent
    but shorter than 8 tokens (a common phrase, the sentence's first words) are not listed."""
    rng = random.Random(2)
    vocabulary = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyzé", k=rng.randint(2, 8))) for _ in range(400)
    ]
    sentence = (
        "All Rights Reserved: this Notice must stay WITH every copy of THE software, unchanged."
    )
    lead = " ".join(sentence.split()[:5])  # 5 words, shared with a second, rarer sentence
    texts: list[str] = []
    for record in range(1500):
        words = rng.choices(vocabulary, k=rng.randint(20, 40))
        if record % 3 == 0:
            words.insert(rng.randrange(len(words)), "of the")  # 500 times, 2 tokens
        text = " ".join(words)
        half = len(words) // 2
        if record % 12 == 5:  # 125 records
            text = " ".join([*words[:half], sentence, *words[half:]])
        elif record % 12 == 7:
            text = " ".join([*words[:half], lead, "differs", *words[half:]])
        texts.extend([text] * (rng.randint(2, 9) if record % 12 == 1 else 1))
    planted = sum(sentence in text for text in texts)
    assert planted == 125
    index = ExactIndex.open(build_index(texts, tmp_path / "index", token_starts=word_starts))
    assert (index.manifest["top_span_min_tokens"], index.manifest["top_span_min_bytes"]) == (
        8,
        None,
    )
    spans = index.corpus_stats().top_spans
    assert len(spans) == 20
    top = spans[0]
    assert (top.text, top.count, top.n_tokens) == (f" {sentence} ", planted, len(sentence.split()))
    assert texts[top.record].encode()[top.start : top.start + top.n_bytes] == top.text.encode()
    assert all(span.n_tokens >= 8 for span in spans)
    assert not any(span.text.strip() in sentence for span in spans[1:])  # no piece of it
    # The rest: copied records (<= 9 copies), or the sentence grown by a byte some of its
    # occurrences share (10 of them follow a word ending in "q" here), with a smaller count.
    assert all(span.count <= 9 or sentence in span.text for span in spans[1:])


def test_persisted_as_read_only_memmaps(built, tmp_path: Path) -> None:
    texts, index = built
    again = ExactIndex.open(index.directory)
    assert again.record_matches(range(len(texts))) == index.record_matches(range(len(texts)))
    assert again.corpus_stats() == index.corpus_stats()
    files = sorted(p.name for p in index.directory.iterdir())
    assert files == [
        "manifest.json",
        "record_counts.npy",
        "record_spans.npy",
        "sa.npy",
        "starts.npy",
        "text.npy",
    ]
    for array in (again._text, again._suffix_array, again._record_spans):
        assert isinstance(array, np.memmap) and not array.flags.writeable
    assert again._suffix_array.dtype == np.int32


def test_build_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "index"
    target.mkdir()
    (target / "keep.txt").write_text("untouched")
    with pytest.raises(FileExistsError):
        build_index(["a b c"], target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]

    def failing_tokenizer(texts: list[str]) -> list[np.ndarray]:
        raise RuntimeError("tokenizer broke half-way")

    with pytest.raises(RuntimeError):
        build_index(["a b c"] * 3000, tmp_path / "other", token_starts=failing_tokenizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # no half index, no staging


def test_empty_corpus(tmp_path: Path) -> None:
    index = ExactIndex.open(build_index([], tmp_path / "index", token_starts=word_starts))
    assert index.n_records == 0 and index.record_matches([]) == []
    assert index.count("a") == 0 and index.longest_match("a") == (0, 0)
    assert index.corpus_stats().repeated_bytes_share == 0.0
    blank = ExactIndex.open(
        build_index([" ", "  ", " "], tmp_path / "blank", token_starts=word_starts)
    )
    assert blank.corpus_stats().repeated_bytes_share == 0.0  # no token anywhere
    assert blank.corpus_stats().top_spans == []


def test_small_chunks_carry_across_boundaries(built, tmp_path: Path, monkeypatch) -> None:
    """Chunked passes hand their running minima over: tiny chunks give the same index."""
    texts, index = built
    monkeypatch.setattr(exact, "_CHUNK", 48)
    path = build_index(
        texts,
        tmp_path / "index",
        token_starts=word_starts,
        min_repeat_tokens=3,
        top_spans=5,
        min_span_tokens=4,
    )
    small = ExactIndex.open(path)
    assert small.record_matches(range(len(texts))) == index.record_matches(range(len(texts)))
    assert small.corpus_stats() == index.corpus_stats()


@pytest.mark.parametrize("widen", [False, True])
def test_token_starts_stream_to_disk_and_widen_past_int32(
    built, tmp_path: Path, monkeypatch, widen: bool
) -> None:
    """Token starts go to a file batch by batch, as int32, switching to int64 (earlier batches
    rewritten) at the first offset past the limit (2**31 - 1; here lowered to reach it)."""
    texts, index = built
    monkeypatch.setattr(exact, "_TOKEN_BATCH", 16)
    monkeypatch.setattr(exact, "_CHUNK", 100)
    expected, base = [], 0
    for text in texts:
        data = text.encode()
        expected += [base + m.start() for m in re.finditer(rb"\S+", data)]
        base += len(data) + 1
    # Past the third batch of records: two batches are written narrow before the switch.
    limit = sum(len(t.encode()) + 1 for t in texts[:40])
    if widen:
        monkeypatch.setattr(exact, "_TOKEN_INT32_LIMIT", limit)
    corpus = exact._read_corpus(texts, word_starts, tmp_path / "tokens")
    assert corpus.token_positions.dtype == (np.int64 if widen else np.int32)
    assert corpus.token_positions.tolist() == expected and expected[-1] > limit
    path = build_index(
        texts,
        tmp_path / "index",
        token_starts=word_starts,
        min_repeat_tokens=3,
        top_spans=5,
        min_span_tokens=4,
    )
    again = ExactIndex.open(path)
    assert again.record_matches(range(len(texts))) == index.record_matches(range(len(texts)))
    assert again.corpus_stats() == index.corpus_stats()
    stored = {"text", "sa", "starts", "record_counts", "record_spans"}
    assert {p.name for p in path.iterdir()} == {f"{n}.npy" for n in stored} | {"manifest.json"}


def test_nearest_below_equals_scan() -> None:
    rng = np.random.default_rng(5)
    values = rng.integers(0, 40, size=5000).astype(np.int32)
    levels = exact._minima_levels(values)
    start = rng.integers(0, len(values) + 1, size=400)
    threshold = rng.integers(0, 12, size=400)
    before = exact._nearest_below(levels, start, threshold, forward=False)
    after = exact._nearest_below(levels, start, threshold, forward=True)
    for q in range(len(start)):
        below = np.flatnonzero(values < threshold[q])
        earlier, later = below[below < start[q]], below[below >= start[q]]
        assert before[q] == (earlier[-1] if len(earlier) else -1)
        assert after[q] == (later[0] if len(later) else len(values))


def test_integers_in_ranges_come_in_bounded_pieces(monkeypatch) -> None:
    monkeypatch.setattr(exact, "_CHUNK", 8)
    rng = np.random.default_rng(9)
    bounds = np.sort(rng.choice(400, size=60, replace=False))
    begin, end = bounds[0::2], bounds[1::2]  # disjoint, sorted, some longer than a chunk
    pieces = list(exact._integers_in(begin, end))
    expected = [i for b, e in zip(begin, end, strict=True) for i in range(b, e)]
    assert np.concatenate(pieces).tolist() == expected
    assert max(map(len, pieces)) <= 16 and max(end - begin) > 16
    assert list(exact._integers_in(begin[:0], end[:0])) == []


def test_bytes_for_tokens_equal_brute_force(monkeypatch) -> None:
    monkeypatch.setattr(exact, "_CHUNK", 16)
    rng = np.random.default_rng(3)
    tokens = np.sort(rng.choice(200, size=50, replace=False))
    out = np.empty(200, dtype=np.int32)
    least = exact._bytes_for_tokens(tokens, 4, out)
    for p in range(200):
        later = tokens[tokens >= p]
        assert out[p] == (later[3] - p + 1 if len(later) >= 4 else np.iinfo(np.int32).max), p
    assert least == out.min()
