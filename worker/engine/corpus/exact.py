"""Exact duplication in a corpus: one suffix array over its UTF-8 bytes, read by every shard.

Duplication is the first driver of memorization (Carlini et al. 2022, Kandpal et al. 2022), so
each record gets how many records share its normalised text and the longest byte span it shares
with another record.

The text is every record's UTF-8 bytes followed by 0xFF, a byte UTF-8 never uses, so no query can
match across a separator; LCP values are still capped at the record end, because two records with
equal tails would otherwise match through their separators into the next records. The suffix array
comes from libdivsufsort (int32 below 2**31 bytes, else int64), the LCP array from Kasai's
algorithm; the most repeated spans are the maximal repeats read off its LCP intervals. Everything
the shards need is computed at build time and stored as plain .npy files that open read-only as
memmaps; the build fills a staging directory and renames it into place.

Example:
    >>> import tempfile
    >>> texts = ["the cat sat", "a cat sat down", "dog"]
    >>> path = build_index(texts, Path(tempfile.mkdtemp()) / "index")
    >>> index = ExactIndex.open(path)
    >>> index.count("cat sat"), index.longest_match("my cat sat up")
    (2, (9, 1))
    >>> index.record_matches([0])[0].span_bytes  # " cat sat"
    8
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydivsufsort import divsufsort, kasai

from worker.engine.corpus.store import publish_directory, read_manifest

FORMAT = "memaudit-exact-index"
FORMAT_VERSION = 1
SEPARATOR = 0xFF
# Ranks or positions handled per vectorised step: bounds the int64 temporaries to ~40 MB.
_CHUNK = 1 << 19
# Queries per step of the minima search: each step gathers (queries, _FANOUT) int64 matrices.
_QUERY_BATCH = 1 << 16
# Block size of the minima hierarchy over the LCP array (levels take 1/15 of its memory).
_FANOUT = 16
# Token starts are stored as int32 up to this offset (2**31 - 1), as int64 past it.
_TOKEN_INT32_LIMIT = np.iinfo(np.int32).max
# Texts handed to the tokenizer callback at once.
_TOKEN_BATCH = 1024
_RANK_BITS = 32
# Intervals whose left contexts are read at once when picking the top spans (the first batch).
_SPAN_BATCH = 1024
# A span length beyond any text: "too few tokens left".
_TOO_FEW_TOKENS = 1 << 62
# The count the top spans are first sought above (then 1/16 of it, ... down to 2).
_FIRST_LEAST_COUNT = 1024

TokenStarts = Callable[[list[str]], list[np.ndarray]]


def normalise(text: str) -> str:
    """The form under which two records count as one: case, width and spacing ignored."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class RecordMatch:
    record_count: int  # records with the same normalised text, itself included (1 = unique)
    span_bytes: int  # longest span shared with another record (0 if none)
    span_tokens: int | None  # that span in tokens (None when the index was built without tokens)
    span_count: int  # occurrences of that span in the whole corpus (>= 2 when span_bytes > 0)
    span_start: int  # the span's byte offsets within the record
    span_stop: int


@dataclass(frozen=True)
class TopSpan:
    text: str  # decoded with replacement characters where the span cuts a multi-byte character
    count: int
    n_bytes: int
    n_tokens: int | None
    record: int  # one record holding it, and the byte offset there
    start: int


@dataclass(frozen=True)
class CorpusStats:
    n_records: int
    n_bytes: int  # UTF-8 bytes of the records, separators excluded
    duplicate_histogram: dict[int, int]  # normalised-text count -> records with that count
    repeated_bytes_share: (
        float | None
    )  # bytes inside a span of >= min_repeat_tokens seen >= 2 times
    min_repeat_tokens: int
    # The most repeated spans of at least the build's minimum length (manifest top_span_min_tokens
    # at the listed occurrence, or top_span_min_bytes), by occurrence count (overlapping
    # occurrences inside records), ties by length in bytes, then by the span's bytes.
    # Only maximal spans: none lies inside a longer span seen as often, so a boilerplate sentence is
    # listed once, whole, not with its prefixes and suffixes; a part of it that also occurs
    # elsewhere is listed with its own, larger count.
    top_spans: list[TopSpan]


@dataclass(frozen=True)
class _SpanLimits:
    count: int  # spans listed in CorpusStats.top_spans
    min_tokens: int  # their minimum length in tokens, when token starts are known
    min_bytes: int  # their minimum length in bytes otherwise


@dataclass
class _Corpus:
    text: np.ndarray  # (N,) uint8: each record's bytes then SEPARATOR
    starts: np.ndarray  # (R+1,) int64: record r is text[starts[r] : starts[r+1] - 1]
    record_counts: np.ndarray  # (R,) int32
    # (T,) sorted byte offsets in `text` where tokens start: int32 below 2**31, else int64
    token_positions: np.ndarray | None


def build_index(
    texts: Iterable[str],
    directory: Path,
    *,
    token_starts: TokenStarts | None = None,
    min_repeat_tokens: int = 50,
    top_spans: int = 20,
    min_span_tokens: int = 8,
    min_span_bytes: int = 32,
) -> Path:
    """Build the index of `texts` into `directory`, which must not exist yet; returns `directory`.

    The directory appears complete or not at all, so shards never open a half-written index.
    `top_spans` most repeated spans are kept in the stats (see `CorpusStats.top_spans`), each at
    least `min_span_tokens` tokens long when `token_starts` is given, else `min_span_bytes` bytes:
    shorter repeats are common words and phrases, not boilerplate.
    """
    if min(min_repeat_tokens, min_span_tokens, min_span_bytes) < 1 or top_spans < 0:
        raise ValueError("the minimum lengths must be >= 1 and top_spans >= 0")
    limits = _SpanLimits(top_spans, min_span_tokens, min_span_bytes)
    return publish_directory(
        lambda staging: _build_into(staging, texts, token_starts, min_repeat_tokens, limits),
        Path(directory),
    )


def _build_into(
    staging: Path,
    texts: Iterable[str],
    token_starts: TokenStarts | None,
    min_repeat_tokens: int,
    span_limits: _SpanLimits,
) -> dict:
    """Every array of the index into `staging`; returns the manifest (`store.py` writes it)."""
    corpus = _read_corpus(texts, token_starts, staging / "tokens.scratch")
    starts, record_counts = corpus.starts, corpus.record_counts
    n_records = len(starts) - 1
    text_length = len(corpus.text)
    token_positions = corpus.token_positions  # on disk, untouched until the LCP array exists
    text = corpus.text
    del corpus
    _return_freed_memory()
    if text_length:
        suffix_array = divsufsort(text)
        # Stored as soon as it exists; from here on a file's clean pages the kernel may evict.
        suffix_array = _park(staging, "sa", suffix_array, mode="r+")
        lcp = kasai(text, suffix_array)  # lcp[k] = LCP(sa[k], sa[k+1]); lcp[-1] = 0
    else:
        suffix_array = lcp = np.empty(0, dtype=np.int32)
        _save(staging, "sa", suffix_array)
    text_sha256 = hashlib.sha256(memoryview(text)).hexdigest()
    # Later stages read a few bytes of the text: stored and reopened, it leaves the RAM.
    text = _park(staging, "text", text)
    lcp = _park(staging, "lcp.scratch", lcp, mode="r+")  # capped in place below

    # One work array (rank order, then text order) and the memmaps' pages dropped from this
    # process between the passes that read them whole keep the peak below kasai's, 13 bytes per
    # corpus byte (text, suffix array, LCP and its rank array).
    record_of = _RecordOfPosition(starts)
    work = _longest_other_record_prefix(lcp, suffix_array, record_of)
    span_bytes, span_rank = _best_suffix_per_record(work, suffix_array, record_of)
    levels = _minima_levels(lcp)
    left, right = _rank_interval(levels, span_rank, span_bytes)
    span_count = np.where(span_bytes > 0, right - left + 1, 0)
    span_position = suffix_array[span_rank].astype(np.int64) if n_records else np.zeros(0, np.int64)
    suffix_array = _remap(suffix_array)
    span_tokens = _tokens_between(token_positions, span_position, span_position + span_bytes)

    share, bytes_needed = None, None
    if token_positions is not None:
        token_positions = _remap(token_positions)
        _repeat_length_by_position(lcp, suffix_array, out=work)
        suffix_array, lcp = _remap(suffix_array), _remap(lcp)
        levels[0] = lcp
        share = _repeated_share(work, token_positions, min_repeat_tokens, starts)
    intervals = tuple(np.zeros(0, dtype=lcp.dtype) for _ in range(3))
    if span_limits.count:
        shortest = span_limits.min_bytes
        if token_positions is not None:
            shortest = _bytes_for_tokens(token_positions, span_limits.min_tokens, out=work)
            bytes_needed = work
            token_positions = _remap(token_positions)
        openings = _interval_openings(lcp, suffix_array, shortest, bytes_needed)
        del work, bytes_needed  # the generator's own reference goes when it is used up
        intervals = _intervals(levels, openings)
    else:
        del work, bytes_needed
    top = _top_repeated_spans(
        text, starts, suffix_array, levels, intervals, token_positions, span_limits.count
    )
    del levels

    record_spans = np.stack(
        [span_position - starts[:-1], span_bytes, span_count, span_tokens], axis=1
    ).astype(np.int64)  # (R, 4): start, bytes, count, tokens (-1 without tokens)
    record_spans[span_bytes == 0] = 0
    if token_positions is None:
        record_spans[:, 3] = -1
    stats = CorpusStats(
        n_records=n_records,
        n_bytes=int(text_length - n_records),
        duplicate_histogram=_histogram(record_counts),
        repeated_bytes_share=share,
        min_repeat_tokens=min_repeat_tokens,
        top_spans=top,
    )
    has_tokens, suffix_array_dtype = token_positions is not None, str(suffix_array.dtype)
    del text, suffix_array, lcp, token_positions
    for scratch in staging.glob("*.scratch*"):
        scratch.unlink()
    _save(staging, "starts", starts)
    _save(staging, "record_counts", record_counts)
    _save(staging, "record_spans", record_spans)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "n_records": n_records,
        "n_bytes": stats.n_bytes,
        "text_length": text_length,
        "suffix_array_dtype": suffix_array_dtype,
        "separator": SEPARATOR,
        "has_tokens": has_tokens,
        "top_span_min_tokens": span_limits.min_tokens if has_tokens else None,
        "top_span_min_bytes": None if has_tokens else span_limits.min_bytes,
        "text_sha256": text_sha256,
        "stats": asdict(stats),
    }
    return manifest


class _TokenStartsFile:
    """Token starts appended to a raw file as they are found, so none of them sit in RAM (or in
    the allocator's free lists) while the text is read: int32 while every offset fits, int64 from
    the first that doesn't (the file is then rewritten once)."""

    def __init__(self, path: Path) -> None:
        self.path, self.dtype, self.count = path, np.dtype(np.int32), 0
        self.handle = open(path, "wb")  # noqa: SIM115 (closed by close())

    def append(self, positions: np.ndarray) -> None:
        if len(positions) and self.dtype == np.int32 and positions[-1] > _TOKEN_INT32_LIMIT:
            self._widen()
        self.handle.write(memoryview(np.ascontiguousarray(positions, dtype=self.dtype)))
        self.count += len(positions)

    def _widen(self) -> None:
        self.handle.close()
        narrow = self.path.with_suffix(".narrow")
        self.path.rename(narrow)
        self.handle, self.dtype = open(self.path, "wb"), np.dtype(np.int64)  # noqa: SIM115
        written = np.memmap(narrow, dtype=np.int32, mode="r") if self.count else []
        for a in range(0, self.count, _CHUNK):
            self.handle.write(memoryview(written[a : a + _CHUNK].astype(np.int64)))
        del written
        narrow.unlink()

    def close(self) -> np.ndarray:
        """The starts, memory-mapped read-only."""
        self.handle.close()
        if not self.count:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.count,))


def _read_corpus(
    texts: Iterable[str], token_starts: TokenStarts | None, tokens_path: Path
) -> _Corpus:
    buffer = bytearray()  # grows in place (realloc), so the text is never held twice
    lengths: list[int] = []
    digests = bytearray()
    tokens = _TokenStartsFile(tokens_path) if token_starts is not None else None
    batch: list[tuple[str, int, int]] = []  # (text, offset in buffer, byte length)

    def tokenise_batch() -> None:
        offsets = token_starts([text for text, _, _ in batch])
        if len(offsets) != len(batch):
            raise ValueError("token_starts must return one array per text")
        found_in_batch = [np.zeros(0, dtype=np.int64)]
        for (_, base, length), found in zip(batch, offsets, strict=True):
            found = np.unique(np.asarray(found, dtype=np.int64))
            if found.size and (found[0] < 0 or found[-1] >= length):
                raise ValueError(f"token start outside its text of {length} bytes")
            found_in_batch.append(found + base)
        tokens.append(np.concatenate(found_in_batch))
        batch.clear()

    try:
        for text in texts:
            data = text.encode("utf-8")
            if token_starts is not None:
                batch.append((text, len(buffer), len(data)))
                if len(batch) == _TOKEN_BATCH:
                    tokenise_batch()
            buffer += data
            buffer.append(SEPARATOR)
            lengths.append(len(data))
            digests += hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=16).digest()
        if batch:
            tokenise_batch()
    except BaseException:
        if tokens is not None:
            tokens.close()
        raise

    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64) + 1, out=starts[1:])
    del lengths
    keys = np.frombuffer(bytes(digests), dtype="S16")
    del digests
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return _Corpus(
        text=np.frombuffer(buffer, dtype=np.uint8),
        starts=starts,
        record_counts=counts[inverse].astype(np.int32),
        token_positions=tokens.close() if tokens is not None else None,
    )


class _RecordOfPosition:
    """The record holding each text position.

    A binary search costs ~100 ns a lookup, the largest cost of a build that does three lookups per
    byte; a table of the record at every 64th byte answers all positions of buckets that lie inside
    one record and leaves the binary search to the rest.
    """

    bucket_bits = 6

    def __init__(self, starts: np.ndarray) -> None:
        self.starts = starts
        bucket_starts = np.arange(
            0, int(starts[-1]) + (2 << self.bucket_bits), 1 << self.bucket_bits
        )
        self.first = (np.searchsorted(starts, bucket_starts, side="right") - 1).astype(np.int32)

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        bucket = positions >> self.bucket_bits
        record = self.first[bucket].astype(np.int64)
        unsure = np.flatnonzero(record != self.first[bucket + 1])
        record[unsure] = np.searchsorted(self.starts, positions[unsure], side="right") - 1
        return record


def _segmented_running_min(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Running minimum of int64 `values` that restarts wherever `segment` changes."""
    if not len(values):
        return values
    new_segment = np.empty(len(values), dtype=bool)
    new_segment[0] = True
    np.not_equal(segment[1:], segment[:-1], out=new_segment[1:])
    run = np.cumsum(new_segment)
    # Earlier runs are lifted above every later value, so the running minimum cannot carry over.
    lift = (run[-1] - run) * (int(values.max()) + 1)
    return np.minimum.accumulate(values + lift) - lift


def _longest_other_record_prefix(
    lcp: np.ndarray, suffix_array: np.ndarray, record_of: _RecordOfPosition
) -> np.ndarray:
    """Per rank, the longest prefix of that suffix found in a different record; caps `lcp` in place.

    In rank order, suffixes of one record form runs; the nearest other-record suffix above rank k is
    the one before k's run, and the LCP with it is the minimum of lcp over the run up to k (likewise
    below), so two segmented running minima give every answer.
    """
    n = len(lcp)
    longest = np.empty(n, dtype=lcp.dtype)
    carry_record, carry_value = -1, 0
    for a in range(0, n, _CHUNK):
        b = min(a + _CHUNK, n)
        position = suffix_array[a:b].astype(np.int64)
        record = record_of(position)
        to_record_end = record_of.starts[record + 1] - 1 - position
        np.minimum(lcp[a:b], to_record_end.astype(lcp.dtype), out=lcp[a:b])
        above = np.empty(b - a, dtype=np.int64)  # LCP with the rank just above
        above[0] = lcp[a - 1] if a else 0
        above[1:] = lcp[a : b - 1]
        if record[0] == carry_record:
            above[0] = min(above[0], carry_value)
        longest[a:b] = _segmented_running_min(above, record)
        carry_record, carry_value = record[-1], int(longest[b - 1])

    carry_record, carry_value = -1, 0
    for b in range(n, 0, -_CHUNK):
        a = max(b - _CHUNK, 0)
        record = record_of(suffix_array[a:b].astype(np.int64))
        below = lcp[a:b].astype(np.int64)  # LCP with the rank just below
        if record[-1] == carry_record:
            below[-1] = min(below[-1], carry_value)
        from_below = _segmented_running_min(below[::-1], record[::-1])[::-1]
        carry_record, carry_value = record[0], int(from_below[0])
        np.maximum(longest[a:b], from_below.astype(lcp.dtype), out=longest[a:b])
    return longest


def _best_suffix_per_record(
    longest: np.ndarray, suffix_array: np.ndarray, record_of: _RecordOfPosition
) -> tuple[np.ndarray, np.ndarray]:
    """Per record, the longest other-record match of its suffixes, and that suffix's rank."""
    n_records = len(record_of.starts) - 1
    if len(longest) >= 1 << _RANK_BITS:
        raise ValueError("corpus too large for the rank packing (4 GiB)")
    best_key = np.zeros(n_records, dtype=np.int64)  # length << 32 | (2**32 - 1 - rank)
    low_mask = (1 << _RANK_BITS) - 1
    for a in range(0, len(longest), _CHUNK):
        b = min(a + _CHUNK, len(longest))
        record = record_of(suffix_array[a:b].astype(np.int64))
        key = (longest[a:b].astype(np.int64) << _RANK_BITS) | (low_mask - np.arange(a, b))
        np.maximum.at(best_key, record, key)
    return best_key >> _RANK_BITS, low_mask - (best_key & low_mask)


def _minima_levels(values: np.ndarray) -> list[np.ndarray]:
    """values, then the minima of its blocks of _FANOUT, of those blocks, ... down to one block."""
    levels = [values]
    while len(levels[-1]) > _FANOUT:
        level = levels[-1]
        levels.append(np.minimum.reduceat(level, np.arange(0, len(level), _FANOUT)))
    return levels


def _nearest_below(
    levels: list[np.ndarray], start: np.ndarray, threshold: np.ndarray, forward: bool
) -> np.ndarray:
    """Per query, the nearest index j with levels[0][j] < threshold: j >= start when `forward`, else
    j < start; len(levels[0]) or -1 when there is none. Climbs the block minima, then descends."""
    n = len(levels[0])
    result = np.full(len(start), n if forward else -1, dtype=np.int64)
    pending = np.arange(len(start))
    cursor = start.astype(np.int64)
    lanes = np.arange(_FANOUT)
    for depth, level in enumerate(levels):
        if not len(pending):
            break
        top = depth == len(levels) - 1
        base = np.zeros_like(cursor) if top else cursor // _FANOUT * _FANOUT
        index = base[:, None] + lanes[None, :]
        valid = (index >= cursor[:, None]) if forward else (index < cursor[:, None])
        valid &= index < len(level)
        hit = valid & (level[np.minimum(index, len(level) - 1)] < threshold[pending, None])
        found = hit.any(axis=1)
        lane = hit.argmax(axis=1) if forward else _FANOUT - 1 - hit[:, ::-1].argmax(axis=1)
        at = (base + lane)[found]
        for lower in reversed(
            levels[:depth]
        ):  # the block holds a value below: find it a level down
            index = at[:, None] * _FANOUT + lanes[None, :]
            inside = index < len(lower)
            hit = inside & (
                lower[np.minimum(index, len(lower) - 1)] < threshold[pending[found], None]
            )
            lane = hit.argmax(axis=1) if forward else _FANOUT - 1 - hit[:, ::-1].argmax(axis=1)
            at = at * _FANOUT + lane
        result[pending[found]] = at
        pending, cursor = pending[~found], cursor[~found]
        cursor = cursor // _FANOUT + 1 if forward else cursor // _FANOUT
    return result


def _rank_interval(
    levels: list[np.ndarray], rank: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First and last rank of the suffixes that share `length` bytes with the suffix at `rank`."""
    left = _nearest_below_batched(levels, rank, length, forward=False) + 1
    right = _nearest_below_batched(levels, rank, length, forward=True)
    return left, right


def _nearest_below_batched(
    levels: list[np.ndarray], start: np.ndarray, threshold: np.ndarray, forward: bool
) -> np.ndarray:
    """`_nearest_below` in batches, so its (queries, _FANOUT) temporaries stay small."""
    found = np.empty(len(start), dtype=np.int64)
    for a in range(0, len(start), _QUERY_BATCH):
        chosen = slice(a, a + _QUERY_BATCH)
        found[chosen] = _nearest_below(levels, start[chosen], threshold[chosen], forward)
    return found


def _tokens_between(
    token_positions: np.ndarray | None, start: np.ndarray, stop: np.ndarray
) -> np.ndarray:
    if token_positions is None:
        return np.full(len(start), -1, dtype=np.int64)
    return _search_tokens(token_positions, stop) - _search_tokens(token_positions, start)


def _search_tokens(token_positions: np.ndarray, values: np.ndarray | list[int]) -> np.ndarray:
    """np.searchsorted with `values` in the positions' dtype: mixed dtypes would make numpy copy
    the whole (int32) array to int64 on every call. Values past its range sort after all of it."""
    limit = np.iinfo(token_positions.dtype).max
    return np.searchsorted(token_positions, np.minimum(values, limit).astype(token_positions.dtype))


def _repeat_length_by_position(lcp: np.ndarray, suffix_array: np.ndarray, out: np.ndarray) -> None:
    """out[p] = longest prefix of the suffix at text position p that occurs at least twice."""
    n = len(lcp)
    for a in range(0, n, _CHUNK):
        b = min(a + _CHUNK, n)
        above = np.empty(b - a, dtype=lcp.dtype)  # LCP with the rank just above
        above[0] = lcp[a - 1] if a else 0
        above[1:] = lcp[a : b - 1]
        out[suffix_array[a:b]] = np.maximum(above, lcp[a:b])


def _bytes_for_tokens_from(
    token_positions: np.ndarray, min_tokens: int, start: int, stop: int
) -> np.ndarray:
    """Per text position p in [start, stop): the fewest bytes a span starting at p needs to hold
    min_tokens tokens, up to and including the first byte of its min_tokens-th token start at or
    after p; _TOO_FEW_TOKENS or more where the text has too few tokens left.

    p plus that length changes only at token starts, so each gap between two of them repeats one
    value: a binary search per byte would cost ~60 ns, this a few.
    """
    if not len(token_positions):
        return np.full(stop - start, _TOO_FEW_TOKENS, dtype=np.int64)
    first, last = _search_tokens(token_positions, [start, stop])
    gap_starts = np.concatenate(([start], token_positions[first:last] + 1, [stop]))
    token = np.arange(first, last + 1) + (min_tokens - 1)
    reach = token_positions[np.minimum(token, len(token_positions) - 1)].astype(np.int64) + 1
    reach[token >= len(token_positions)] = _TOO_FEW_TOKENS + stop
    return np.repeat(reach, np.diff(gap_starts)) - np.arange(start, stop)


def _repeated_share(
    repeat_length: np.ndarray, token_positions: np.ndarray, min_tokens: int, starts: np.ndarray
) -> float:
    """Share of record bytes inside some span of >= min_tokens tokens that occurs >= 2 times.

    Position p opens such a span when repeat_length[p] reaches its min_tokens-th token start; the
    covered bytes are the union of those spans, a running maximum of ends.
    """
    n_bytes = len(repeat_length) - (len(starts) - 1)
    if n_bytes <= 0:
        return 0.0
    covered, reach = 0, 0
    for a in range(0, len(repeat_length), _CHUNK):
        position = np.arange(a, min(a + _CHUNK, len(repeat_length)), dtype=np.int64)
        length = repeat_length[a : a + len(position)]
        opens = length >= _bytes_for_tokens_from(token_positions, min_tokens, a, a + len(position))
        span_end = np.where(opens, position + length, 0)
        span_end[0] = max(span_end[0], reach)
        np.maximum.accumulate(span_end, out=span_end)
        reach = int(span_end[-1])
        covered += int(np.count_nonzero(span_end > position))
    return covered / n_bytes


def _histogram(record_counts: np.ndarray) -> dict[int, int]:
    values, frequency = np.unique(record_counts, return_counts=True)
    return {int(v): int(f) for v, f in zip(values, frequency, strict=True)}


def _bytes_for_tokens(token_positions: np.ndarray, min_tokens: int, out: np.ndarray) -> int:
    """out[p] = the fewest bytes a span starting at text position p needs to hold min_tokens tokens,
    or the dtype's maximum (`_bytes_for_tokens_from`); returns the least, a floor that spares most
    ranks a look-up. A span that would reach into the next record never counts: LCP values stop at
    the record end, below these lengths.
    """
    too_few = np.iinfo(out.dtype).max
    least = too_few
    for a in range(0, len(out), _CHUNK):
        b = min(a + _CHUNK, len(out))
        needed = np.minimum(_bytes_for_tokens_from(token_positions, min_tokens, a, b), too_few)
        out[a:b] = needed
        least = min(least, int(needed.min()))
    return least


def _interval_openings(
    lcp: np.ndarray, suffix_array: np.ndarray, shortest: int, bytes_needed: np.ndarray | None
) -> Iterator[np.ndarray]:
    """Ranks k where an LCP interval of depth lcp[k] >= `shortest` may begin, in rank order, one
    array per chunk of ranks (a corpus of short repeated phrases has them at most ranks).

    An interval of depth d spans ranks left..right whose suffixes share exactly d bytes (the string
    of one suffix-tree node); lcp equals d at each boundary k between its children and exceeds it
    elsewhere inside, and the first such k stands for it. A k whose rank above has the same lcp
    value is never first, which drops runs of copies cheaply; `_interval_starts` settles the rest.
    With tokens, the span must also hold `bytes_needed` bytes at the suffix of rank k.
    """
    for a in range(0, len(lcp), _CHUNK):
        b = min(a + _CHUNK, len(lcp))
        depth = lcp[a:b]
        above = np.empty(b - a, dtype=np.int64)
        above[0] = lcp[a - 1] if a else -1
        above[1:] = depth[:-1]
        rank = np.flatnonzero((depth >= shortest) & (depth != above)) + a
        if bytes_needed is not None:
            rank = rank[lcp[rank] >= bytes_needed[suffix_array[rank]]]
        yield rank


def _intervals(
    levels: list[np.ndarray], openings: Iterable[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rank, depth, first rank) of each interval, from `_interval_starts` chunk by chunk, kept
    in the LCP array's dtype (ranks and depths fit it): only these arrays span the corpus."""
    dtype = levels[0].dtype
    found = [[np.zeros(0, dtype=dtype)] for _ in range(3)]
    for opening in openings:
        for kept, values in zip(found, _interval_starts(levels, opening), strict=True):
            kept.append(values.astype(dtype))
    joined = []
    for kept in found:  # one at a time: the pieces of the others are already gone
        joined.append(np.concatenate(kept))
        kept.clear()
    return joined[0], joined[1], joined[2]


def _interval_starts(
    levels: list[np.ndarray], opening: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The openings that are their interval's first boundary: (rank, depth, first rank of it)."""
    lcp = levels[0]
    depth = lcp[opening].astype(np.int64)
    left = opening.copy()
    # Where the rank above shares fewer bytes, k is first and the interval starts at k; where it
    # shares more, the nearest rank above with lcp <= depth decides: below depth, it is the rank
    # before the interval; equal to depth, k is a later boundary.
    unsure = np.flatnonzero((opening > 0) & (lcp[np.maximum(opening - 1, 0)] > depth))
    above = _nearest_below_batched(levels, opening[unsure], depth[unsure] + 1, forward=False)
    first = np.ones(len(opening), dtype=bool)
    first[unsure] = (above < 0) | (lcp[np.maximum(above, 0)] < depth[unsure])
    left[unsure] = above + 1
    return opening[first], depth[first], left[first]


def _integers_in(begin: np.ndarray, end: np.ndarray) -> Iterator[np.ndarray]:
    """The integers of the sorted, disjoint ranges [begin, end), in arrays of at most 2 * _CHUNK."""
    if not len(begin):
        return
    pieces = -(-(end - begin) // _CHUNK)
    owner = np.repeat(np.arange(len(begin)), pieces)
    piece_begin = (
        begin[owner] + (np.arange(len(owner)) - (np.cumsum(pieces) - pieces)[owner]) * _CHUNK
    )
    size = np.minimum(piece_begin + _CHUNK, end[owner]) - piece_begin
    group = (np.cumsum(size) - size) // _CHUNK  # pieces starting in one window of _CHUNK
    bounds = [*np.flatnonzero(np.diff(group)) + 1, len(group)]
    for a, b in zip([0, *bounds[:-1]], bounds, strict=True):
        offset = np.cumsum(size[a:b]) - size[a:b]
        yield np.repeat(piece_begin[a:b] - offset, size[a:b]) + np.arange(int(size[a:b].sum()))


def _left_maximal(
    text: np.ndarray, suffix_array: np.ndarray, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """Per interval of ranks left..right: whether its suffixes follow two different bytes, or one
    starts a record, so its span cannot grow to the left without losing an occurrence.

    That holds when some adjacent pair k, k+1 inside does; only the pairs in the union of the
    intervals are read.
    """
    if not len(left):
        return np.zeros(0, dtype=bool)
    order = np.argsort(left, kind="stable")
    begin, end = left[order], np.maximum.accumulate(right[order])  # pairs [begin, end)
    opens_run = np.ones(len(order), dtype=bool)
    opens_run[1:] = begin[1:] > end[:-1]
    run_end = end[np.append(np.flatnonzero(opens_run)[1:] - 1, len(order) - 1)]
    differing = [np.zeros(0, dtype=np.int64)]
    for rank in _integers_in(begin[opens_run], run_end):
        position = suffix_array[rank].astype(np.int64)
        following = suffix_array[rank + 1].astype(np.int64)
        before = np.where(position > 0, text[position - 1], SEPARATOR)
        before_following = np.where(following > 0, text[following - 1], SEPARATOR)
        differing.append(rank[(before != before_following) | (before == SEPARATOR)])
    witnesses = np.concatenate(differing)
    return np.searchsorted(witnesses, left) < np.searchsorted(witnesses, right)


def _top_repeated_spans(
    text: np.ndarray,
    starts: np.ndarray,
    suffix_array: np.ndarray,
    levels: list[np.ndarray],
    intervals: tuple[np.ndarray, np.ndarray, np.ndarray],
    token_positions: np.ndarray | None,
    limit: int,
) -> list[TopSpan]:
    """The `limit` most repeated maximal spans among `intervals` (`_intervals`).

    A span is maximal when no longer span holding it occurs as often: it ends where its occurrences
    stop agreeing on the next byte (an LCP interval is exactly that) and starts where they stop
    agreeing on the byte before (`_left_maximal`). Its prefixes and suffixes with the same count
    are therefore never listed.
    """
    opening, depth, left = intervals
    if not len(opening) or not limit:
        return []
    lcp = levels[0]
    right = np.full(len(opening), -1, dtype=opening.dtype)  # found once needed
    maximal = np.full(len(opening), -1, dtype=np.int8)  # 1 or 0 once read
    least_count = _FIRST_LEAST_COUNT
    while True:
        # A span seen >= c times has lcp >= its depth at ranks left .. left + c - 2: a few samples
        # rule out most intervals when the top spans are frequent. c falls until `limit` reach it.
        maybe = np.concatenate(
            [
                _may_reach(
                    lcp, depth, left, np.arange(a, min(a + _CHUNK, len(opening))), least_count
                )
                for a in range(0, len(opening), _CHUNK)
            ]
        )
        unknown = maybe[right[maybe] < 0]
        right[unknown] = _nearest_below_batched(
            levels, opening[unknown] + 1, depth[unknown], forward=True
        )
        kept = _most_repeated_maximal(
            text, suffix_array, maybe, depth, left, right, maximal, least_count, limit
        )
        if len(kept) == limit or least_count == 2:
            break
        least_count = max(2, least_count // 16)
    position = suffix_array[opening[kept]].astype(np.int64)
    length, count = depth[kept], right[kept] - left[kept] + 1
    record = np.searchsorted(starts, position, side="right") - 1
    tokens = _tokens_between(token_positions, position, position + length)
    return [
        TopSpan(
            text=text[p : p + n].tobytes().decode("utf-8", errors="replace"),
            count=int(c),
            n_bytes=int(n),
            n_tokens=int(t) if token_positions is not None else None,
            record=int(r),
            start=int(p - starts[r]),
        )
        for p, n, c, t, r in zip(position, length, count, tokens, record, strict=True)
    ]


def _may_reach(
    lcp: np.ndarray, depth: np.ndarray, left: np.ndarray, among: np.ndarray, least_count: int
) -> np.ndarray:
    """The intervals of `among` not ruled out from >= least_count occurrences by sampled ranks."""
    step = least_count - 2
    while step and len(among):
        sample = np.minimum(left[among].astype(np.int64) + step, len(lcp) - 1)
        among = among[lcp[sample] >= depth[among]]
        step //= 2
    return among


def _most_repeated_maximal(
    text: np.ndarray,
    suffix_array: np.ndarray,
    among: np.ndarray,
    depth: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    maximal: np.ndarray,
    least_count: int,
    limit: int,
) -> np.ndarray:
    """The first `limit` intervals of `among` seen >= least_count times whose spans are maximal.

    Best first: most occurrences, then longest, then by their bytes (the intervals' rank order).
    The suffixes of a maximal span follow it in that order, so `maximal` (-1: not read yet) is
    filled for growing batches, not for every interval.
    """
    count = right[among] - left[among] + 1
    frequent = among[count >= least_count]
    count = count[count >= least_count]
    order = frequent[np.lexsort((left[frequent], -depth[frequent], -count))]
    chosen, batch_start, batch_size = [np.zeros(0, dtype=np.int64)], 0, max(4 * limit, _SPAN_BATCH)
    while batch_start < len(order) and sum(map(len, chosen)) < limit:
        batch = order[batch_start : batch_start + batch_size]
        unread = batch[maximal[batch] < 0]
        maximal[unread] = _left_maximal(text, suffix_array, left[unread], right[unread])
        chosen.append(batch[maximal[batch] == 1])
        batch_start, batch_size = batch_start + batch_size, 4 * batch_size
    return np.concatenate(chosen)[:limit]


def _save(directory: Path, name: str, array: np.ndarray) -> None:
    with open(directory / f"{name}.npy", "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


def _park(
    directory: Path, name: str, array: np.ndarray | None, mode: str = "r"
) -> np.ndarray | None:
    """Save `array` and hand back its file memory-mapped: the caller drops the in-RAM copy, and
    the pages it reads later are clean file pages, evictable under memory pressure."""
    if array is None:
        return None
    _save(directory, name, array)
    if not len(array):
        return array
    del array
    return np.load(directory / f"{name}.npy", mmap_mode=mode, allow_pickle=False)


def _return_freed_memory() -> None:
    """Hand the C allocator's free pages back to the system. glibc keeps freed heap memory for
    reuse; a tokenizer's per-text temporaries leave ~2 bytes per text byte of it behind, which
    would stay resident through the suffix and LCP arrays' peak. A no-op without glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _remap(array: np.ndarray | None) -> np.ndarray | None:
    """The same file mapped afresh: the pages read so far leave this process's resident set
    (they stay in the page cache), so a pass that reads a memmap whole doesn't keep it there."""
    if not isinstance(array, np.memmap):
        return array
    return np.memmap(
        array.filename, dtype=array.dtype, mode=array.mode, offset=array.offset, shape=array.shape
    )


class ExactIndex:
    """A built index opened read-only: arrays are memmaps, so shards on one host share the pages."""

    def __init__(self, directory: Path, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
        self.directory = directory
        self.manifest = manifest
        self.n_records: int = manifest["n_records"]
        self.n_bytes: int = manifest["n_bytes"]
        self._text = arrays["text"]
        self._suffix_array = arrays["sa"]
        self._starts = arrays["starts"]
        self._record_counts = arrays["record_counts"]
        self._record_spans = arrays["record_spans"]

    @classmethod
    def open(cls, directory: Path) -> ExactIndex:
        directory = Path(directory)
        manifest = read_manifest(directory, FORMAT)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory} is not a {FORMAT} v{FORMAT_VERSION} index "
                f"(found {manifest.get('format')} v{manifest.get('format_version')})"
            )
        arrays = {
            name: np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            for name in ("text", "sa", "starts", "record_counts", "record_spans")
        }
        n_records, length = manifest["n_records"], manifest["text_length"]
        expected = {
            "text": (length,),
            "sa": (length,),
            "starts": (n_records + 1,),
            "record_counts": (n_records,),
            "record_spans": (n_records, 4),
        }
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise ValueError(
                    f"{directory}/{name}.npy has shape {arrays[name].shape}, not {shape}"
                )
        return cls(directory, manifest, arrays)

    def record_matches(self, indices: Sequence[int]) -> list[RecordMatch]:
        chosen = np.asarray(indices, dtype=np.int64)
        if chosen.size and (chosen.min() < 0 or chosen.max() >= self.n_records):
            raise IndexError(f"record index outside 0..{self.n_records - 1}")
        counts = np.asarray(self._record_counts[chosen])
        spans = np.asarray(self._record_spans[chosen])
        with_tokens = self.manifest["has_tokens"]
        return [
            RecordMatch(
                record_count=int(count),
                span_bytes=int(length),
                span_tokens=int(tokens) if with_tokens else None,
                span_count=int(occurrences),
                span_start=int(start),
                span_stop=int(start + length),
            )
            for count, (start, length, occurrences, tokens) in zip(counts, spans, strict=True)
        ]

    def count(self, query: str | bytes) -> int:
        """Occurrences of these exact bytes inside records, overlapping ones included."""
        pattern = _as_bytes(query)
        if not pattern:
            raise ValueError("count of an empty query")
        if SEPARATOR in pattern:
            return 0
        low, high = self._rank_range(pattern)
        return high - low

    def longest_match(self, query: str | bytes) -> tuple[int, int]:
        """(bytes of the longest substring of `query` found in the corpus, its occurrence count).

        Among equally long substrings the most frequent one's count is given; (0, 0) if none.
        """
        best_length, best_starts = 0, []
        pieces = _as_bytes(query).split(bytes([SEPARATOR]))
        for piece in pieces:
            for offset in range(len(piece)):
                if len(piece) - offset < best_length:
                    break
                length = self._longest_prefix_found(piece[offset:])
                if length > best_length:
                    best_length, best_starts = length, []
                if length == best_length and length:
                    best_starts.append(piece[offset : offset + length])
        if not best_length:
            return 0, 0
        return best_length, max(self.count(found) for found in set(best_starts))

    def corpus_stats(self) -> CorpusStats:
        stats = dict(self.manifest["stats"])
        stats["duplicate_histogram"] = {
            int(count): records for count, records in stats["duplicate_histogram"].items()
        }
        stats["top_spans"] = [TopSpan(**span) for span in stats["top_spans"]]
        return CorpusStats(**stats)

    def record_text(self, record: int) -> str:
        """A whole record's text, as indexed."""
        if not 0 <= record < self.n_records:
            raise IndexError(f"record {record} outside 0..{self.n_records - 1}")
        length = int(self._starts[record + 1]) - 1 - int(self._starts[record])
        return self.text_of(record, 0, length)

    def text_of(self, record: int, start: int, stop: int) -> str:
        """A record's bytes [start, stop) decoded; a cut multi-byte character becomes U+FFFD."""
        if not 0 <= record < self.n_records:
            raise IndexError(f"record {record} outside 0..{self.n_records - 1}")
        base = int(self._starts[record])
        length = int(self._starts[record + 1]) - 1 - base
        if not 0 <= start <= stop <= length:
            raise IndexError(f"[{start}, {stop}) outside record {record} of {length} bytes")
        return self._text[base + start : base + stop].tobytes().decode("utf-8", errors="replace")

    def _suffix_prefix(self, rank: int, length: int) -> bytes:
        position = int(self._suffix_array[rank])
        return self._text[position : position + length].tobytes()

    def _first_rank(self, pattern: bytes, *, after_equal: bool) -> int:
        """First rank whose suffix, cut to len(pattern), is >= pattern (> when `after_equal`)."""
        low, high = 0, len(self._suffix_array)
        while low < high:
            middle = (low + high) // 2
            prefix = self._suffix_prefix(middle, len(pattern))
            if prefix < pattern or (after_equal and prefix == pattern):
                low = middle + 1
            else:
                high = middle
        return low

    def _rank_range(self, pattern: bytes) -> tuple[int, int]:
        return (
            self._first_rank(pattern, after_equal=False),
            self._first_rank(pattern, after_equal=True),
        )

    def _longest_prefix_found(self, pattern: bytes) -> int:
        """Longest prefix of `pattern` that starts some suffix: one of the two ranks around it."""
        rank = self._first_rank(pattern, after_equal=False)
        best = 0
        for neighbour in (rank - 1, rank):
            if 0 <= neighbour < len(self._suffix_array):
                best = max(
                    best, _common_prefix(pattern, self._suffix_prefix(neighbour, len(pattern)))
                )
        return best


def _as_bytes(query: str | bytes) -> bytes:
    return query.encode("utf-8") if isinstance(query, str) else bytes(query)


def _common_prefix(first: bytes, second: bytes) -> int:
    length = min(len(first), len(second))
    differ = np.flatnonzero(
        np.frombuffer(first, np.uint8, length) != np.frombuffer(second, np.uint8, length)
    )
    return int(differ[0]) if len(differ) else length
