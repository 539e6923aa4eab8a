"""Evaluation-set contamination: word n-gram overlap of evaluation records with a training corpus.

GPT-3 (Brown et al. 2020, appendix C) calls an evaluation example dirty when any of its word
13-grams occurs in the training data. The corpus's n-grams are hashed once into a sorted unique
uint64 array (memory-mapped on open, looked up with searchsorted); an evaluation record's row
carries how many of its n-grams occur, the fraction, and whether any does.

Normalisation (`contamination_words`), as in the 13-gram decontamination of lm-evaluation-harness
extended to Unicode: NFKC, casefold, delete every character that is neither a word character nor
whitespace, and underscores (so punctuation and symbols go: "don't" -> "dont", "U.S." -> "us"),
then split on whitespace. N-grams are counted by position (a repeated n-gram counts each time).

A record of fewer than n words has no n-gram and is left unjudged (`contaminated` is None),
its longest verbatim span still reported. GPT-3 judged such an example by whether it occurs
whole; a raw substring match cannot stand in for that ("42", "cat" and "Paris" occur inside
almost any corpus), and the exact test (its normalised words occurring as consecutive corpus
words) needs the corpus's k-grams for every k < n. Audit short answers with a smaller `n`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from worker.engine.corpus.near_duplicates import (
    CHUNK_RECORDS,
    batched,
    sorted_unique,
    word_ngram_hashes,
)
from worker.engine.corpus.store import publish_directory, read_manifest
from worker.engine.distributions import wilson_interval

FORMAT = "memaudit-ngram-set/1"
# Top bits of a hash pick its partition at build time: each partition is sorted alone and the
# partitions concatenate in order, so peak memory is one partition, not the whole corpus.
PARTITION_BITS = 4
_NOT_WORD = re.compile(r"[^\w\s]|_")


def contamination_words(text: str) -> list[str]:
    """The words n-grams are taken over: NFKC, casefold, punctuation and symbols deleted."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold()).split()


def build_ngram_set(texts: Iterable[str], directory: Path, *, n: int = 13) -> Path:
    """Hash every word n-gram of the corpus once into `directory`/ngrams.npy (sorted, unique)."""

    def build(scratch: Path) -> dict:
        n_partitions = 1 << PARTITION_BITS
        shift = np.uint64(64 - PARTITION_BITS)
        partition_paths = [scratch / f"partition-{p}.scratch" for p in range(n_partitions)]
        partition_files = [path.open("wb") for path in partition_paths]
        n_records = 0
        n_ngrams = 0
        try:
            for chunk in batched(texts, CHUNK_RECORDS):
                hashes, _ = word_ngram_hashes(
                    [contamination_words(text) for text in chunk], n, whole_if_short=False
                )
                n_records += len(chunk)
                n_ngrams += hashes.size
                hashes = sorted_unique(hashes)
                bounds = np.searchsorted(hashes >> shift, np.arange(n_partitions + 1))
                for partition, file in enumerate(partition_files):
                    file.write(hashes[bounds[partition] : bounds[partition + 1]].tobytes())
        finally:
            for file in partition_files:
                file.close()
        uniques = []
        for path in partition_paths:
            uniques_path = path.with_suffix(".npy")
            np.save(uniques_path, sorted_unique(np.fromfile(path, np.uint64)), allow_pickle=False)
            path.unlink()
            uniques.append(uniques_path)
        sizes = [np.load(path, mmap_mode="r").size for path in uniques]
        merged = np.lib.format.open_memmap(
            scratch / "ngrams.npy", mode="w+", dtype=np.uint64, shape=(sum(sizes),)
        )
        start = 0
        for path, size in zip(uniques, sizes, strict=True):
            merged[start : start + size] = np.load(path, mmap_mode="r")
            start += size
            path.unlink()
        merged.flush()
        del merged
        return {
            "format": FORMAT,
            "n": n,
            "n_records": n_records,
            "n_ngrams": n_ngrams,
            "n_unique_ngrams": start,
            "normalisation": "NFKC, casefold, [^\\w\\s]|_ deleted, whitespace-separated words",
        }

    return publish_directory(build, directory)


@dataclass(frozen=True)
class Overlap:
    """One evaluation record against the corpus; fraction and contaminated are None if too short."""

    n_words: int
    n_ngrams: int
    n_found: int
    fraction: float | None
    contaminated: bool | None  # GPT-3's "dirty": any n-gram found in the corpus


class NgramSet:
    """The corpus's n-gram hashes, memory-mapped: shards share the page cache, not copies."""

    def __init__(self, manifest: dict, hashes: np.ndarray) -> None:
        self.manifest = manifest
        self.n: int = int(manifest["n"])
        self._hashes = hashes

    @classmethod
    def open(cls, directory: Path) -> NgramSet:
        directory = Path(directory)
        manifest = read_manifest(directory, FORMAT)
        hashes = np.load(directory / "ngrams.npy", mmap_mode="r", allow_pickle=False)
        return cls(manifest, hashes)

    def __len__(self) -> int:
        return int(self._hashes.size)

    def _contains(self, queries: np.ndarray) -> np.ndarray:
        if self._hashes.size == 0:
            return np.zeros(queries.size, bool)
        position = np.minimum(np.searchsorted(self._hashes, queries), self._hashes.size - 1)
        return np.asarray(self._hashes[position]) == queries

    def overlaps(self, texts: Sequence[str]) -> list[Overlap]:
        """Overlap of each text, hashed and looked up in one batch."""
        word_lists = [contamination_words(text) for text in texts]
        hashes, offsets = word_ngram_hashes(word_lists, self.n, whole_if_short=False)
        found = np.concatenate(([0], np.cumsum(self._contains(hashes))))
        rows = []
        for words, start, end in zip(word_lists, offsets[:-1], offsets[1:], strict=True):
            n_ngrams, n_found = int(end - start), int(found[end] - found[start])
            judged = n_ngrams > 0
            rows.append(
                Overlap(
                    n_words=len(words),
                    n_ngrams=n_ngrams,
                    n_found=n_found,
                    fraction=n_found / n_ngrams if judged else None,
                    contaminated=n_found > 0 if judged else None,
                )
            )
        return rows

    def overlap(self, text: str) -> Overlap:
        return self.overlaps([text])[0]


def contamination_rows(
    texts: Sequence[str],
    ngram_set: NgramSet,
    longest_match: Callable[[str], tuple[int, int]] | None = None,
) -> list[dict]:
    """One row per evaluation record: n-gram overlap, and the longest span shared with the corpus.

    `longest_match(text) -> (n_bytes, count)` is the exact index's longest span of the raw text
    found in the corpus and how often it occurs there; it is reported beside the n-gram test and
    never decides a record too short for one n-gram (see the module's docstring).
    """
    rows = []
    for index, (text, overlap) in enumerate(zip(texts, ngram_set.overlaps(texts), strict=True)):
        row = {"index": index, "n": ngram_set.n, **asdict(overlap)}
        row["longest_match_bytes"] = row["longest_match_count"] = None
        if longest_match is not None:
            n_bytes, count = longest_match(text)
            row["longest_match_bytes"], row["longest_match_count"] = n_bytes, count
        rows.append(row)
    return rows


def contamination_summary(rows: Sequence[dict]) -> dict:
    """Contaminated share over the judged records with its Wilson interval, and mean overlap."""
    judged = [row for row in rows if row["contaminated"] is not None]
    n_contaminated = sum(bool(row["contaminated"]) for row in judged)
    fractions = [row["fraction"] for row in rows if row["fraction"] is not None]
    spans = [row["longest_match_bytes"] for row in rows if row["longest_match_bytes"] is not None]
    return {
        "n_records": len(rows),
        "n_judged": len(judged),
        "n_unjudged": len(rows) - len(judged),
        "n_contaminated": n_contaminated,
        "contaminated_share": n_contaminated / len(judged) if judged else None,
        "contaminated_share_interval": wilson_interval(n_contaminated, len(judged)),
        "mean_overlap_fraction": math.fsum(fractions) / len(fractions) if fractions else None,
        "mean_longest_match_bytes": math.fsum(spans) / len(spans) if spans else None,
        "max_longest_match_bytes": max(spans) if spans else None,
    }
