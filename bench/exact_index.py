"""The exact index: build time, size on disk and peak RAM for a synthetic corpus.

    .venv/bin/python -m bench.exact_index                      # 100k records x ~1 KB
    .venv/bin/python -m bench.exact_index --records 1000000 --words 200

Records are random words from a 5,000-word vocabulary (some multi-byte), with planted exact copies
(5% of records, each copied 2-30 times) and a shared boilerplate sentence in 10% of them. Tokens are
whitespace-separated words (the stand-in for a tokenizer's offsets). Peak RAM is the process's
maximum resident set (getrusage), printed before and after the build.
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from worker.engine.corpus.exact import ExactIndex, build_index

_WORD = re.compile(rb"\S+")


def word_starts(texts: list[str]) -> list[np.ndarray]:
    return [np.array([m.start() for m in _WORD.finditer(t.encode())]) for t in texts]


def synthetic_corpus(n_records: int, n_words: int, seed: int = 0) -> tuple[list[str], str]:
    """The records, and the boilerplate sentence planted in about 10% of them."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzéüß"
    vocabulary = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(5000)]
    boilerplate = " ".join(rng.choices(vocabulary, k=60))
    texts: list[str] = []
    while len(texts) < n_records:
        text = " ".join(rng.choices(vocabulary, k=n_words))
        if rng.random() < 0.1:
            text = text[: len(text) // 2] + " " + boilerplate + " " + text[len(text) // 2 :]
        copies = rng.randint(2, 30) if rng.random() < 0.05 else 1
        texts.extend([text] * copies)
    return texts[:n_records], boilerplate


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--words", type=int, default=150, help="words per record (~7 bytes each)")
    args = parser.parse_args()

    texts, boilerplate = synthetic_corpus(args.records, args.words)
    corpus_mib = sum(len(t.encode()) for t in texts) / 2**20
    print(f"corpus: {len(texts)} records, {corpus_mib:.1f} MiB; peak RSS {peak_rss_mib():.0f} MiB")
    root = Path(tempfile.mkdtemp(prefix="exact-bench-"))
    try:
        started, started_cpu = time.perf_counter(), time.process_time()
        path = build_index(texts, root / "index", token_starts=word_starts)
        build_s, build_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
        size_mib = sum(p.stat().st_size for p in path.iterdir()) / 2**20
        print(
            f"build: {build_s:.1f} s ({build_cpu_s:.1f} s CPU), {size_mib:.0f} MiB on disk, "
            f"peak RSS {peak_rss_mib():.0f} MiB"
        )

        index = ExactIndex.open(path)
        started = time.perf_counter()
        matches = index.record_matches(range(index.n_records))
        lookup_s = time.perf_counter() - started
        rng = random.Random(1)
        windows = [
            t[s : s + 200] for t in rng.sample(texts, 200) for s in [rng.randrange(len(t) - 200)]
        ]
        started = time.perf_counter()
        counts = [index.count(w) for w in windows if w]
        count_ms = (time.perf_counter() - started) / len(counts) * 1000
        started = time.perf_counter()
        for window in windows[:20]:
            index.longest_match(window + " unseen tail")
        longest_ms = (time.perf_counter() - started) / 20 * 1000
        stats = index.corpus_stats()
        print(
            f"lookups: record_matches for all {lookup_s:.1f} s; count {count_ms:.2f} ms/query; "
            f"longest_match {longest_ms:.0f} ms/query (~210 bytes)"
        )
        print(
            f"stats: histogram {dict(sorted(stats.duplicate_histogram.items())[:5])}..., "
            f"repeated share (>=50 tokens) {stats.repeated_bytes_share:.4f}, "
            f"records with a shared span {sum(m.span_bytes > 0 for m in matches)}; "
            f"max window count {max(counts)}"
        )
        top = stats.top_spans[0]
        print(
            f"top span: x{top.count}, {top.n_tokens} tokens, {top.n_bytes} bytes; the planted "
            f"boilerplate (in {sum(boilerplate in t for t in texts)} records): "
            f"{top.text.strip() == boilerplate}; next: "
            + ", ".join(f"x{s.count} {s.n_tokens} tokens" for s in stats.top_spans[1:4])
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
