"""The duplication kind: whole-corpus counts of each record's normalised text, and the longest
span each record shares with another, from the corpus's exact byte index.

A shard sees a slice of the corpus, so both come from artefacts built once from every record
and looked up per record: `normalised-counts` (sorted 64-bit text keys, their counts, and the
index of each key's first record) and `exact-index` (`worker/engine/corpus/exact.py`: a suffix
array over the corpus's UTF-8 bytes, spans counted in bytes and in the corpus tokenizer's
tokens)."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.inspection.datasets import Record
from worker.checks.dataset.display import Display
from worker.checks.dataset.kinds import DuplicationParams
from worker.engine.corpus.exact import FORMAT_VERSION, ExactIndex, build_index, normalise

COUNTS_ARTEFACT = "normalised-counts"
# Bumped whenever normalise or text_key changes, so an old artefact is never read as new.
COUNTS_VERSION = "v1-nfkc-casefold-ws-blake2b64"


def text_key(text: str) -> int:
    """A 64-bit key of the normalised text. Two different texts share a key with probability
    about n²/2⁶⁵ over n records (3·10⁻⁸ at a million), which would only merge two groups."""
    digest = hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


EXACT_ARTEFACT = "exact-index"


def group_key(text: str, key: bytes) -> str:
    """The stored name of a record's duplicate group: keyed, because an unkeyed hash of a short
    or templated text (a bare card number) gives the text back to anyone who tries candidates."""
    return hmac.new(key, normalise(text).encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def record_text(record: Record) -> str | None:
    text = record.data.get("text")
    return text if isinstance(text, str) else None


def corpus_texts(records: Iterable[Record]) -> Iterator[str]:
    """Every record's text in order, a record without one as empty: index positions stay
    record positions."""
    for record in records:
        yield record_text(record) or ""


def exact_index(corpus: Any, min_repeat_tokens: int = 50, top_spans: int = 20) -> ExactIndex:
    """The corpus's exact byte index with token counts in the corpus tokenizer, built once per
    corpus, tokenizer and settings on this host (model audits that name a dataset audit open
    the same one)."""
    from worker.checks.dataset.tokenizer import token_starts

    name, tokenizer = corpus.tokenizer()
    tokenizer_key = hashlib.blake2b(name.encode(), digest_size=5).hexdigest()
    key = f"v{FORMAT_VERSION}-tok{tokenizer_key}-r{min_repeat_tokens}-s{top_spans}"

    def write(records: Iterator[Record], directory: Path) -> None:
        build_index(
            corpus_texts(records),
            directory / "index",
            token_starts=lambda texts: token_starts(tokenizer, texts),
            min_repeat_tokens=min_repeat_tokens,
            top_spans=top_spans,
        )

    return ExactIndex.open(corpus.artefact(EXACT_ARTEFACT, key, corpus.build_with(write)) / "index")


def build_counts(records: Iterable[Record], directory: Path) -> None:
    """Write the counts artefact of a corpus into `directory` (arrays only: no pickle)."""
    keys: list[int] = []
    indexes: list[int] = []
    for record in records:
        text = record_text(record)
        if text is not None:
            keys.append(text_key(text))
            indexes.append(record.index)
    all_keys = np.array(keys, dtype=np.uint64)
    unique, first, counts = np.unique(all_keys, return_index=True, return_counts=True)
    np.save(directory / "keys.npy", unique, allow_pickle=False)
    np.save(directory / "counts.npy", counts.astype(np.int64), allow_pickle=False)
    np.save(directory / "first.npy", np.array(indexes, dtype=np.int64)[first], allow_pickle=False)


@lru_cache(maxsize=8)
def open_counts(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted keys, counts, first record index), memory-mapped, once per process."""
    return tuple(  # type: ignore[return-value]
        np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        for name in ("keys", "counts", "first")
    )


def lookup_counts(directory: Path, keys: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per key: its corpus count and the index of its first record."""
    sorted_keys, counts, first = open_counts(directory)
    wanted = np.array(keys, dtype=np.uint64)
    at = np.searchsorted(sorted_keys, wanted)
    found = (at < len(sorted_keys)) & (sorted_keys[np.minimum(at, len(sorted_keys) - 1)] == wanted)
    if not found.all():  # the artefact was built from other bytes than these records
        raise ValueError("a record's text is missing from the corpus counts: rebuild the index")
    return np.asarray(counts[at]), np.asarray(first[at])


@dataclass(frozen=True)
class DuplicationInputs:
    counts: Path  # the normalised-counts artefact
    index: ExactIndex
    display: Display
    tokenizer: str


def prepare_duplication(corpus: Any, params: DuplicationParams) -> DuplicationInputs:
    """Both artefacts, built from every record on first use on this host."""
    counts = corpus.artefact(COUNTS_ARTEFACT, COUNTS_VERSION, corpus.build_with(build_counts))
    index = exact_index(corpus, params.min_repeat_tokens, params.top_spans)
    return DuplicationInputs(counts, index, corpus.display(), corpus.tokenizer()[0])


def duplication_values(
    inputs: DuplicationInputs, records: Sequence[Record], params: DuplicationParams
) -> list[dict[str, Any]]:
    """Per record: its corpus count, whether it is duplicated, its group key, the longest span
    it shares with another record (bytes, tokens, occurrences, a masked excerpt) and, on the
    first record of each duplicated group, a short masked example for the summary."""
    texts = [record_text(record) for record in records]
    keys = [text_key(text) for text in texts if text is not None]
    counts, firsts = lookup_counts(inputs.counts, keys) if keys else (np.array([]), np.array([]))
    matches = inputs.index.record_matches([record.index for record in records])
    values: list[dict[str, Any]] = []
    found = iter(zip(keys, counts.tolist(), firsts.tolist(), strict=True))
    for record, text, match in zip(records, texts, matches, strict=True):
        if text is None:
            values.append({"duplicates": None, "duplicate": None, "skipped": "no text"})
            continue
        _key, count, first = next(found)
        row: dict[str, Any] = {
            "duplicates": count,
            "duplicate": count > 1,
            "group": group_key(text, inputs.display.key),
            "span_bytes": match.span_bytes,
            "span_tokens": match.span_tokens,
            "span_count": match.span_count,
            "long_span": bool(
                match.span_tokens is not None and match.span_tokens >= params.min_repeat_tokens
            ),
        }
        if match.span_bytes:
            row["span_text"] = inputs.display.excerpt(text, match.span_start, match.span_stop)
        if count > 1 and first == record.index:
            row["example"] = inputs.display.short(text)
        values.append(row)
    return values


def duplication_facts(inputs: DuplicationInputs, params: DuplicationParams) -> dict[str, Any]:
    """The corpus-level counts of the exact index: repeated share and the most repeated
    spans (masked), the same from every shard."""
    stats = inputs.index.corpus_stats()
    return {
        "n_bytes": stats.n_bytes,
        "tokenizer": inputs.tokenizer,
        "min_repeat_tokens": stats.min_repeat_tokens,
        "repeated_bytes_share": stats.repeated_bytes_share,
        "top_spans": [
            {
                "text": inputs.display.excerpt(
                    inputs.index.record_text(span.record), span.start, span.start + span.n_bytes
                ),
                "count": span.count,
                "n_bytes": span.n_bytes,
                "n_tokens": span.n_tokens,
            }
            for span in stats.top_spans[: params.top_spans]
        ],
    }


def _histogram(counts: Sequence[int]) -> dict[str, list[int]]:
    """Records by how many copies of their text the corpus holds."""
    by_copies = Counter(counts)
    copies = sorted(by_copies)
    return {"copies": copies, "records": [by_copies[c] for c in copies]}


SPAN_BINS = (0, 1, 10, 50, 100, 500)  # lower edges, in tokens


def _span_bins(spans: Sequence[int]) -> dict[str, list[Any]]:
    """Records by the token length of the longest span they share with another record."""
    edges = np.array(SPAN_BINS)
    found = np.bincount(np.searchsorted(edges, spans, side="right") - 1, minlength=len(edges))
    labels = [
        f"{low}" if high == low + 1 else f"{low}–{high - 1}" if high else f"{low}+"
        for low, high in zip(SPAN_BINS, (*SPAN_BINS[1:], None), strict=True)
    ]
    return {"bins": labels, "records": [int(n) for n in found]}


def summarize_duplication(
    values: Sequence[dict[str, Any] | None], params: DuplicationParams
) -> dict[str, Any]:
    """Corpus-level duplication: the histogram, the duplicated share, the largest groups."""
    assessed = [v for v in values if v is not None and v.get("duplicates") is not None]
    counts = [int(v["duplicates"]) for v in assessed]
    n = len(assessed)
    groups: dict[str, dict[str, Any]] = {}
    for value in assessed:
        group = groups.setdefault(value["group"], {"group": value["group"], "count": 0})
        group["count"] = int(value["duplicates"])
        if "example" in value:
            group["example"] = value["example"]
    duplicated = [g for g in groups.values() if g["count"] > 1]
    largest = sorted(duplicated, key=lambda g: (-g["count"], g["group"]))[: params.top_groups]
    n_duplicate = sum(1 for c in counts if c > 1)
    spans = [int(v["span_tokens"]) for v in assessed if v.get("span_tokens") is not None]
    n_long = sum(1 for v in assessed if v.get("long_span"))
    return {
        "n_records": n,
        "n_skipped": len(values) - n,
        "n_distinct_texts": len(groups),
        "n_duplicate_records": n_duplicate,
        "duplicate_share": n_duplicate / n if n else None,
        # Records a deduplication keeping one copy of each text would drop.
        "n_excess_copies": n - len(groups),
        "n_duplicate_groups": len(duplicated),
        "max_copies": max(counts, default=None),
        "histogram": _histogram(counts),
        # Records sharing a span of at least `min_repeat_tokens` tokens with another record:
        # long enough for an extraction window (Carlini et al. 2021 use 50).
        "min_repeat_tokens": params.min_repeat_tokens,
        "n_long_span_records": n_long,
        "long_span_share": n_long / n if n else None,
        "span_tokens_bins": _span_bins(spans) if spans else None,
        "largest_groups": [
            {"count": g["count"], "group": g["group"], "example": g.get("example")} for g in largest
        ],
    }
