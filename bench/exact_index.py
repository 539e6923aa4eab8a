"""The exact index: build time, size on disk and peak RAM for a synthetic corpus.

    .venv/bin/python -m bench.exact_index                      # 100k records x ~1 KB
    .venv/bin/python -m bench.exact_index --records 1000000 --words 200

Records are random words from a 5,000-word vocabulary (some multi-byte), with planted exact copies
(5% of records, each copied 2-30 times) and a shared boilerplate sentence in 10% of them. Tokens are
whitespace-separated words (the stand-in for a tokenizer's offsets).

Each build runs in a forked child, so each has its own peak RAM (getrusage of the child: the
corpus it inherits plus what the build adds, printed apart). `--baseline` names a copy of an
earlier `worker/engine/corpus/exact.py`; its builds then alternate with this one's in the same
run, on the same corpus, so load from other processes hits both alike:

    git show HEAD~1:worker/engine/corpus/exact.py > /tmp/exact_old.py
    .venv/bin/python -m bench.exact_index --baseline /tmp/exact_old.py --rounds 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import random
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from worker.engine.corpus import exact
from worker.engine.corpus.exact import ExactIndex

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


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def load_module(path: Path) -> object:
    """An earlier exact.py as a module of its own (it imports only numpy and pydivsufsort)."""
    spec = importlib.util.spec_from_file_location(f"exact_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _build_child(module: object, texts: list[str], path: Path, report: Path) -> None:
    at_start = rss_mib()
    started, started_cpu = time.perf_counter(), time.process_time()
    module.build_index(texts, path, token_starts=word_starts)
    figures = {
        "wall": time.perf_counter() - started,
        "cpu": time.process_time() - started_cpu,
        "rss_at_start": at_start,
        "peak": peak_rss_mib(),
    }
    report.write_text(json.dumps(figures))


def build_in_child(module: object, texts: list[str], path: Path) -> dict:
    """Build in a forked child (it inherits the corpus; nothing is pickled) and read its figures."""
    report = path.with_suffix(".json")
    child = multiprocessing.get_context("fork").Process(
        target=_build_child, args=(module, texts, path, report)
    )
    child.start()
    child.join()
    if child.exitcode:
        raise RuntimeError(f"the build of {path} failed (exit {child.exitcode})")
    figures = json.loads(report.read_text())
    figures["size"] = sum(p.stat().st_size for p in path.iterdir()) / 2**20
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--words", type=int, default=150, help="words per record (~7 bytes each)")
    parser.add_argument("--baseline", type=Path, help="an earlier exact.py to alternate with")
    parser.add_argument("--rounds", type=int, default=1, help="builds of each version")
    args = parser.parse_args()

    texts, boilerplate = synthetic_corpus(args.records, args.words)
    corpus_mib = sum(len(t.encode()) for t in texts) / 2**20
    print(f"corpus: {len(texts)} records, {corpus_mib:.1f} MiB; peak RSS {peak_rss_mib():.0f} MiB")
    corpus_bytes = corpus_mib * 2**20
    versions = {"this": exact}
    if args.baseline:
        versions = {"baseline": load_module(args.baseline), "this": exact}
    root = Path(tempfile.mkdtemp(prefix="exact-bench-"))
    try:
        for round_ in range(args.rounds):
            for label, module in versions.items():
                path = root / f"index-{label}-{round_}"
                found = build_in_child(module, texts, path)
                grown = (found["peak"] - found["rss_at_start"]) * 2**20
                print(
                    f"build {label} #{round_ + 1}: {found['wall']:.1f} s "
                    f"({found['cpu']:.1f} s CPU), {found['size']:.0f} MiB on disk, "
                    f"peak RSS {found['peak']:.0f} MiB "
                    f"(+{grown / 2**20:.0f} MiB over the {found['rss_at_start']:.0f} MiB it "
                    f"inherited = {grown / corpus_bytes:.1f} bytes per text byte)",
                    flush=True,
                )
                if (label, round_) != ("this", args.rounds - 1):
                    shutil.rmtree(path)

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
