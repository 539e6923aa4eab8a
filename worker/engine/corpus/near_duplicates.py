"""Near-duplicate clusters of a corpus: MinHash-LSH finds candidates, exact Jaccard confirms them.

Duplication drives memorization (Kandpal et al. 2022), and copies that differ by a few edits escape
exact matching. Each record becomes the set of its word 5-gram shingles; MinHash signatures
(datasketch) estimate the Jaccard similarity J of two sets, and LSH banding turns a signature into
b band keys of r rows each, so two records become candidates with probability 1 - (1 - J^r)^b.
Every candidate pair is then verified by the exact Jaccard of its hashed shingle sets, so records
that merely collide in a band (hard negatives) are never clustered; verified pairs are joined by
union-find into clusters.

Normalisation (`normalise`): Unicode NFKC, casefold, whitespace collapsed (words are the
whitespace-separated tokens; punctuation stays attached to its word). A text with fewer words than
the shingle length is one shingle (the whole text), so short exact copies still match; a text with
no words has no shingles and is never clustered.

The index is built once per corpus and written to a directory of `.npy` arrays and a JSON manifest
(never pickle), published by renaming a finished temporary directory, then read per record.
"""

from __future__ import annotations

import hashlib
import itertools
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasketch import MinHash, MinHashLSH

from worker.engine.corpus.store import publish_directory, read_manifest

FORMAT = "memaudit-near-duplicates/1"
# LSH weights (false positive, false negative) for datasketch's b x r optimisation: a missed
# duplicate is an audit error, a false candidate only costs one exact Jaccard, so misses weigh 19x.
# At threshold 0.8 and 128 permutations this gives b = 16 bands of r = 8 rows, candidate
# probability 0.947 at J = 0.8 and 0.9999 at J = 0.9 (0.61 at J = 0.7, 0.06 at J = 0.5).
LSH_WEIGHTS = (0.05, 0.95)
# A band bucket pairs each member with at most this many earlier members: every pair for buckets
# of up to 9 records, linear work for a bucket of a thousand exact copies.
PARTNERS_PER_BUCKET = 8
CHUNK_RECORDS = 1024

_NGRAM_BASE = 0x9E3779B97F4A7C15  # odd
_MASK64 = (1 << 64) - 1


def normalise(text: str) -> list[str]:
    """The words of `text` after NFKC, casefold and whitespace collapsing."""
    return unicodedata.normalize("NFKC", text).casefold().split()


def _fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: every input bit reaches every output bit."""
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))


_POWER_TABLES: dict[int, np.ndarray] = {}
_POWER_TABLE_LIMIT = 1 << 24  # longer tables (a chunk of huge records) are built and dropped


def _powers(base: int, count: int) -> np.ndarray:
    """base^0 .. base^(count-1) modulo 2^64, from a table kept per base (cumprod is slow)."""
    table = _POWER_TABLES.get(base)
    if table is None or table.size < count:
        factors = np.full(max(count, 1 << 16), base, np.uint64)
        factors[0] = 1
        table = np.cumprod(factors, dtype=np.uint64)
        if table.size <= _POWER_TABLE_LIMIT:
            _POWER_TABLES[base] = table
    return table[:count]


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (numpy 2's np.unique hashes first and is slower on uint64)."""
    ordered = np.sort(values)
    return (
        ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if ordered.size else ordered
    )


def unique_per_record(hashes: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each record's hashes sorted and deduplicated in one pass over the chunk."""
    record = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    order = np.lexsort((hashes, record))
    hashes, record = hashes[order], record[order]
    keep = np.ones(hashes.size, bool)
    keep[1:] = (hashes[1:] != hashes[:-1]) | (record[1:] != record[:-1])
    counts = np.bincount(record[keep], minlength=len(offsets) - 1)
    return hashes[keep], np.concatenate(([0], np.cumsum(counts)))


def _blake2b64(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _word_hashes(words: list[str]) -> np.ndarray:
    """A stable 64-bit hash per word (Python's `hash` is salted per process): BLAKE2b of each
    distinct word of the chunk, looked up per occurrence. A polynomial hash modulo 2^64 would be
    faster, but any odd base makes a Thue-Morse word and its complement collide, so crafted
    records could be made near duplicates (or contaminated) of anything."""
    if not words:
        return np.zeros(0, np.uint64)
    table = {word: _blake2b64(word) for word in set(words)}
    return np.fromiter((table[word] for word in words), np.uint64, len(words))


def word_ngram_hashes(
    word_lists: Sequence[list[str]], n: int, *, whole_if_short: bool
) -> tuple[np.ndarray, np.ndarray]:
    """uint64 hashes of every word n-gram of each record, and the records' offsets into them.

    Record i's hashes are hashes[offsets[i]:offsets[i + 1]], in text order (repeats kept). A record
    of 1..n-1 words yields one hash of all its words when `whole_if_short`, else none.
    """
    lengths = np.fromiter((len(words) for words in word_lists), np.int64, len(word_lists))
    word_offsets = np.concatenate(([0], np.cumsum(lengths)))
    words = _word_hashes(list(itertools.chain.from_iterable(word_lists)))  # (W,)
    full_counts = np.maximum(lengths - n + 1, 0)
    short = (lengths > 0) & (lengths < n) if whole_if_short else np.zeros(len(lengths), bool)
    counts = full_counts + short
    offsets = np.concatenate(([0], np.cumsum(counts)))
    hashes = np.empty(int(offsets[-1]), np.uint64)

    multipliers = _powers(_NGRAM_BASE, n)
    n_windows = max(words.size - n + 1, 0)
    window_sum = np.zeros(n_windows, np.uint64)
    for k in range(n):  # sum_k word[i + k] * Q^k: an order-sensitive combination of n words
        window_sum += words[k : k + n_windows] * multipliers[k]
    record_of_window = np.repeat(np.arange(len(lengths)), lengths)[:n_windows]
    start = np.arange(n_windows)
    inside = start + n <= word_offsets[record_of_window + 1]  # the window stays in its record
    record = record_of_window[inside]
    target = offsets[record] + start[inside] - word_offsets[record]
    hashes[target] = _fmix64(window_sum[inside])

    for record in np.flatnonzero(short):
        first, last = word_offsets[record], word_offsets[record + 1]
        whole = words[first:last] * multipliers[: last - first]
        hashes[offsets[record]] = _fmix64(np.array([whole.sum(dtype=np.uint64)], np.uint64))[0]
    return hashes, offsets


def shingles(text: str, n: int = 5) -> np.ndarray:
    """The sorted unique uint64 hashes of the word n-grams of `text`: Jaccard's sets."""
    hashes, _ = word_ngram_hashes([normalise(text)], n, whole_if_short=True)
    return sorted_unique(hashes)


def lsh_parameters(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows from datasketch's weighted false-positive/false-negative optimisation."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    return lsh.b, lsh.r


def candidate_probability(jaccard: float, bands: int, rows: int) -> float:
    """The LSH S-curve: the chance two records of similarity `jaccard` share a band."""
    return 1.0 - (1.0 - jaccard**rows) ** bands


def batched(texts: Iterable[str], size: int) -> Iterable[list[str]]:
    """Lists of `size` consecutive texts (itertools.batched arrives in Python 3.12)."""
    iterator = iter(texts)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _identity(value: int) -> int:
    return value


def _signatures(shingle_sets: list[np.ndarray], num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures (records, num_perm) through datasketch's bulk generator.

    datasketch's default scheme permutes 32-bit values: the low half of each shingle hash (already
    avalanche-mixed) is the value it permutes.
    """
    values = (s.astype(np.uint32).tolist() for s in shingle_sets)
    sketches = MinHash.generator(values, num_perm=num_perm, seed=seed, hashfunc=_identity)
    return np.vstack([sketch.hashvalues for sketch in sketches])


def _band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 key per band: records sharing a key agree on all r rows of that band."""
    grouped = signatures[:, : bands * rows].reshape(len(signatures), bands, rows)  # (N, b, r)
    keys = np.zeros(grouped.shape[:2], np.uint64)
    for row in range(rows):
        keys = (keys ^ grouped[:, :, row].astype(np.uint64)) * np.uint64(_NGRAM_BASE)
    return _fmix64(keys)  # (N, b)


def _candidate_pairs(keys: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Unique candidate pairs (i < j) packed as i * 2^32 + j, over all band columns."""
    packed = []
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_keys = keys[order, band]
        position = np.arange(len(order))
        new_bucket = np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1]))
        bucket_start = np.maximum.accumulate(np.where(new_bucket, position, 0))
        rank = position - bucket_start
        for earlier in range(PARTNERS_PER_BUCKET):
            later = rank > earlier
            first = indices[order[bucket_start[later] + earlier]].astype(np.uint64)
            second = indices[order[later]].astype(np.uint64)
            low, high = np.minimum(first, second), np.maximum(first, second)
            packed.append((low << np.uint64(32)) | high)
    return sorted_unique(np.concatenate(packed)) if packed else np.zeros(0, np.uint64)


def _exact_jaccards(
    pairs: np.ndarray, shingle_store: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Exact Jaccard of the sorted unique shingle sets of each packed pair."""
    jaccards = np.empty(len(pairs), np.float64)
    for k, pair in enumerate(pairs.tolist()):
        first, second = pair >> 32, pair & 0xFFFFFFFF
        a = shingle_store[offsets[first] : offsets[first + 1]]
        b = shingle_store[offsets[second] : offsets[second + 1]]
        shared = np.intersect1d(a, b, assume_unique=True).size
        jaccards[k] = shared / (a.size + b.size - shared)
    return jaccards


def _union_find(n_records: int, firsts: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """The root of each record after joining every (first, second) pair."""
    parent = np.arange(n_records)

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node

    for first, second in zip(firsts.tolist(), seconds.tolist(), strict=True):
        a, b = root(first), root(second)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(node) for node in range(n_records)], np.int64)


def _best_partners(
    n_records: int, firsts: np.ndarray, seconds: np.ndarray, jaccards: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each record's verified partner of highest Jaccard (-1 and NaN where it has none)."""
    best_partner = np.full(n_records, -1, np.int64)
    best_jaccard = np.full(n_records, np.nan, np.float64)
    if firsts.size == 0:
        return best_partner, best_jaccard
    records = np.concatenate((firsts, seconds))
    partners = np.concatenate((seconds, firsts))
    values = np.concatenate((jaccards, jaccards))
    order = np.lexsort((partners, -values, records))  # by record, then highest Jaccard
    first_of_record = np.concatenate(([True], records[order][1:] != records[order][:-1]))
    chosen = order[first_of_record]
    best_partner[records[chosen]] = partners[chosen]
    best_jaccard[records[chosen]] = values[chosen]
    return best_partner, best_jaccard


def _cluster_arrays(roots: np.ndarray) -> dict[str, np.ndarray]:
    """Cluster ids numbered largest first (ties by first member); singletons get id -1."""
    unique_roots, inverse, sizes = np.unique(roots, return_inverse=True, return_counts=True)
    multi = np.flatnonzero(sizes > 1)
    ranking = multi[np.lexsort((unique_roots[multi], -sizes[multi]))]
    id_of_root = np.full(len(unique_roots), -1, np.int64)
    id_of_root[ranking] = np.arange(len(ranking))
    cluster_id = id_of_root[inverse]
    in_cluster = np.flatnonzero(cluster_id >= 0)
    members = in_cluster[np.argsort(cluster_id[in_cluster], kind="stable")]
    cluster_sizes = sizes[ranking]
    return {
        "cluster_id": cluster_id,
        "cluster_size": sizes[inverse].astype(np.int64),
        "members": members.astype(np.int64),
        "member_offsets": np.concatenate(([0], np.cumsum(cluster_sizes))).astype(np.int64),
    }


def build_near_duplicates(
    texts: Iterable[str],
    directory: Path,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle: int = 5,
    seed: int = 1,
) -> Path:
    """Cluster the near duplicates of a whole corpus once and persist the result to `directory`."""
    bands, rows = lsh_parameters(threshold, num_perm)

    def build(scratch: Path) -> dict:
        store_path = scratch / "shingles.scratch"
        set_sizes: list[int] = []
        key_chunks: list[np.ndarray] = []
        with store_path.open("wb") as store:
            for chunk in batched(texts, CHUNK_RECORDS):
                hashes, offsets = word_ngram_hashes(
                    [normalise(text) for text in chunk], shingle, whole_if_short=True
                )
                unique, unique_offsets = unique_per_record(hashes, offsets)
                store.write(unique.tobytes())
                set_sizes.extend(np.diff(unique_offsets).tolist())
                sets = np.split(unique, unique_offsets[1:-1])
                key_chunks.append(_band_keys(_signatures(sets, num_perm, seed), bands, rows))
        n_records = len(set_sizes)
        if n_records >= 1 << 32:
            raise ValueError("more than 2^32 records: split the corpus")
        set_offsets = np.concatenate(([0], np.cumsum(set_sizes, dtype=np.int64)))
        keys = np.concatenate(key_chunks) if key_chunks else np.zeros((0, bands), np.uint64)
        has_shingles = np.flatnonzero(np.asarray(set_sizes, np.int64) > 0)
        pairs = _candidate_pairs(keys[has_shingles], has_shingles)
        del keys
        # Memory-mapped: a million records' shingle sets (1.5 GB) stay on disk, read per pair.
        store = (
            np.asarray(np.memmap(store_path, np.uint64, mode="r"))
            if set_offsets[-1]
            else np.zeros(0, np.uint64)
        )
        jaccards = _exact_jaccards(pairs, store, set_offsets)
        del store
        store_path.unlink()
        verified = jaccards >= threshold
        firsts = (pairs[verified] >> np.uint64(32)).astype(np.int64)
        seconds = (pairs[verified] & np.uint64(0xFFFFFFFF)).astype(np.int64)
        arrays = _cluster_arrays(_union_find(n_records, firsts, seconds))
        arrays["best_partner"], arrays["best_jaccard"] = _best_partners(
            n_records, firsts, seconds, jaccards[verified]
        )
        for name, array in arrays.items():
            np.save(scratch / f"{name}.npy", array, allow_pickle=False)
        return {
            "format": FORMAT,
            "n_records": n_records,
            "threshold": threshold,
            "num_perm": num_perm,
            "shingle": shingle,
            "seed": seed,
            "bands": bands,
            "rows": rows,
            "lsh_weights": list(LSH_WEIGHTS),
            "normalisation": "NFKC, casefold, whitespace-separated words",
            "n_candidate_pairs": len(pairs),
            "n_verified_pairs": int(verified.sum()),
        }

    return publish_directory(build, directory)


@dataclass(frozen=True)
class NearMatch:
    """One record's place among the near duplicates; cluster_id is None for a singleton."""

    index: int
    cluster_id: int | None
    cluster_size: int
    partner: int | None
    jaccard: float | None


@dataclass(frozen=True)
class Cluster:
    cluster_id: int
    size: int
    members: list[int]  # the first few member indices, ascending


class NearDuplicates:
    """A built near-duplicate index, read-only; memory-mapped so shards open it cheaply."""

    def __init__(self, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
        self.manifest = manifest
        self._arrays = arrays

    @classmethod
    def open(cls, directory: Path) -> NearDuplicates:
        directory = Path(directory)
        manifest = read_manifest(directory, FORMAT)
        names = ("cluster_id", "cluster_size", "members", "member_offsets")
        arrays = {
            name: np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            for name in (*names, "best_partner", "best_jaccard")
        }
        return cls(manifest, arrays)

    def __len__(self) -> int:
        return int(self.manifest["n_records"])

    def record(self, index: int) -> NearMatch:
        cluster_id = int(self._arrays["cluster_id"][index])
        partner = int(self._arrays["best_partner"][index])
        return NearMatch(
            index=index,
            cluster_id=None if cluster_id < 0 else cluster_id,
            cluster_size=int(self._arrays["cluster_size"][index]),
            partner=None if partner < 0 else partner,
            jaccard=None if partner < 0 else float(self._arrays["best_jaccard"][index]),
        )

    def clusters(self, top: int = 20, examples: int = 10) -> list[Cluster]:
        """The `top` largest clusters, each with its first `examples` members."""
        offsets = self._arrays["member_offsets"]
        found = []
        for cluster_id in range(min(top, len(offsets) - 1)):
            start, end = int(offsets[cluster_id]), int(offsets[cluster_id + 1])
            members = self._arrays["members"][start : min(end, start + examples)]
            found.append(Cluster(cluster_id, end - start, [int(m) for m in members]))
        return found

    def stats(self) -> dict:
        sizes = np.diff(self._arrays["member_offsets"])
        size_values, size_counts = np.unique(sizes, return_counts=True)
        bands, rows = self.manifest["bands"], self.manifest["rows"]
        threshold = self.manifest["threshold"]
        return {
            "n_records": len(self),
            "n_clusters": int(sizes.size),
            "records_in_clusters": int(sizes.sum()),
            "cluster_size_histogram": {
                str(size): int(count) for size, count in zip(size_values, size_counts, strict=True)
            },
            "threshold": threshold,
            "num_perm": self.manifest["num_perm"],
            "shingle": self.manifest["shingle"],
            "bands": bands,
            "rows": rows,
            "candidate_probability_at_threshold": candidate_probability(threshold, bands, rows),
            "n_candidate_pairs": self.manifest["n_candidate_pairs"],
            "n_verified_pairs": self.manifest["n_verified_pairs"],
        }
