"""The duplication kind: whole-corpus counts of each record's normalised text.

A shard sees a slice of the corpus, so the counts come from an artefact built once from every
record (`normalised-counts`: sorted 64-bit text keys, their counts, and the index of each
key's first record) and looked up per record. Pure numpy over the corpus context the family's
pass gives (`passes.Corpus`)."""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.inspection.datasets import Record
from worker.checks.dataset.display import display_text
from worker.checks.dataset.kinds import DuplicationParams

COUNTS_ARTEFACT = "normalised-counts"
# Bumped whenever normalise or text_key changes, so an old artefact is never read as new.
COUNTS_VERSION = "v1-nfkc-casefold-ws-blake2b64"


def normalise(text: str) -> str:
    """NFKC, case folded, whitespace runs collapsed to one space and trimmed: two records that
    differ only in these ways are the same text to a reader, and to a tokenizer nearly so."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_key(text: str) -> int:
    """A 64-bit key of the normalised text. Two different texts share a key with probability
    about n²/2⁶⁵ over n records (3·10⁻⁸ at a million), which would only merge two groups."""
    digest = hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def record_text(record: Record) -> str | None:
    text = record.data.get("text")
    return text if isinstance(text, str) else None


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


def prepare_duplication(corpus: Any, _params: DuplicationParams) -> Path:
    """The corpus counts' directory, built from every record on first use on this host."""
    return corpus.artefact(COUNTS_ARTEFACT, COUNTS_VERSION, corpus.build_with(build_counts))


def duplication_values(
    directory: Path, records: Sequence[Record], params: DuplicationParams
) -> list[dict[str, Any]]:
    """Per record: its corpus count, whether it is duplicated, its group key, and, on the
    first record of each duplicated group, a short example of the text for the summary."""
    texts = [record_text(record) for record in records]
    keys = [text_key(text) for text in texts if text is not None]
    counts, firsts = lookup_counts(directory, keys) if keys else (np.array([]), np.array([]))
    values: list[dict[str, Any]] = []
    found = iter(zip(keys, counts.tolist(), firsts.tolist(), strict=True))
    for record, text in zip(records, texts, strict=True):
        if text is None:
            values.append({"duplicates": None, "duplicate": None, "skipped": "no text"})
            continue
        key, count, first = next(found)
        row: dict[str, Any] = {"duplicates": count, "duplicate": count > 1, "group": f"{key:016x}"}
        if count > 1 and first == record.index:
            row["example"] = display_text(text)
        values.append(row)
    return values


def _histogram(counts: Sequence[int]) -> dict[str, list[int]]:
    """Records by how many copies of their text the corpus holds."""
    by_copies = Counter(counts)
    copies = sorted(by_copies)
    return {"copies": copies, "records": [by_copies[c] for c in copies]}


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
        "largest_groups": [
            {"count": g["count"], "group": g["group"], "example": g.get("example")} for g in largest
        ],
    }
