"""Dataset audits at scale: a synthetic corpus with planted duplicates, near duplicates and PII,
audited by the dataset kinds shard by shard, as a worker runs them.

    nice -n 10 .venv/bin/python -m bench.dataset_scale                    # 1,000,000 records
    nice -n 10 .venv/bin/python -m bench.dataset_scale --records 100000 --kinds duplication pii

Why the family pass and not `worker.local.audit_records`: a local audit holds every record and
every value of the corpus in one process, which is not how the service scales. Here each kind
runs as the runner runs it: per shard of `--shard-size` records read from the JSONL file, the
dataset family's pass (`worker.checks.dataset.passes`) opened over the shard, its corpus-wide
artefacts built once per corpus on this host. The build runs first in a child process, so its
peak RAM (getrusage of that child) is apart from the lookups' (this process); the shards then
open the finished artefacts. The corpus's sha256 is computed once, as the service stores it
with the dataset, instead of per shard as a local audit without a stored hash does.

Baselines measured in the same run: the exact-index build against a hash count of every
record's normalised text (what exact-duplicate counting needs at the least); the PII pass
against a bare regex pass (e-mail, IPv4, 13-19 digit runs, AWS key ids) over the same texts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import random
import re
import resource
import string
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from core.config import Settings
from core.inspection.datasets import iter_records
from worker.access import Target
from worker.checks.dataset.artefacts import indexes_dir, manifest
from worker.checks.shard_pass import ShardInput, run_passes
from worker.local import LocalAccess

KINDS = ("duplication", "near_duplicates", "pii")
WORDS_PER_RECORD = 200
VOCABULARY = 5000
# Planted shares of the corpus (each a known answer the audit must recover).
GROUP_COPIES = (2, 3, 5, 10, 30, 100)  # exact-duplicate groups, spelt differently per copy
DUPLICATED_SHARE = 0.03
NEAR_PAIR_SHARE = 0.005  # pairs (base, mutant): one or two words replaced, Jaccard ~0.90-0.95
PII_SHARE = 0.02
PII_DISTINCT_PER_TYPE = 40  # values recur: drawn by a Zipf-like weight from this pool
SHARD_SIZE = 10_000
PROGRESS_EVERY_S = 120.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system time of this process: on a shared machine wall time says more about the
    neighbours than about the code."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Timed:
    wall: float = 0.0
    cpu: float = 0.0

    def __str__(self) -> str:
        return f"{self.wall:.1f} s wall, {self.cpu:.1f} s CPU"


# ---- the corpus ------------------------------------------------------------------------------


def _luhn_digit(digits: str) -> str:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char) * (2 if i % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def _gb_iban(rng: random.Random) -> str:
    bban = "WEST" + "".join(rng.choices(string.digits, k=14))
    numeric = "".join(str(int(c, 36)) for c in bban + "GB00")
    return f"GB{98 - int(numeric) % 97:02d}{bban}"


PII_MAKERS = {
    "email": lambda rng, i: f"user.{i}.{rng.randrange(10**6)}@example.com",
    "phone": lambda rng, i: f"+44 20 7946 {i:04d}",
    "credit_card": lambda rng, i: " ".join(
        re.findall("....", (d := "4" + "".join(rng.choices(string.digits, k=14))) + _luhn_digit(d))
    ),
    "iban": lambda rng, i: _gb_iban(rng),
    "ip_address": lambda rng, i: f"192.168.{i}.{rng.randrange(1, 255)}",
    "api_key": lambda rng, i: "AKIA" + "".join(rng.choices(string.ascii_uppercase, k=16)),
}
PII_SENTENCES = {
    "email": "write to {} for details",
    "phone": "call {} today",
    "credit_card": "the card {} was charged",
    "iban": "pay to IBAN {} now",
    "ip_address": "the server at {} answered",
    "api_key": "the key {} leaked",
}
# Copies of one text, spelt so only normalisation (NFKC, casefold, whitespace) joins them.
SPELLINGS = (lambda t: t, str.upper, lambda t: t.replace(" ", "  "), str.title, lambda t: t + "\n")


@dataclass
class Planted:
    """The answers the audit must recover."""

    duplicates: np.ndarray  # (N,) int32: each record's copies in the corpus, itself included
    near_pairs: list[tuple[int, int]]  # (base, mutant) record positions
    pii: dict[str, Counter] = field(default_factory=dict)  # type -> value -> occurrences
    n_bytes: int = 0


def write_corpus(path: Path, n_records: int, seed: int = 0) -> Planted:
    """Random-word records with the planted sets at random positions; only the planted texts
    are held in memory, the rest are written as they are drawn."""
    rng = random.Random(seed)
    vocabulary = [
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 8))) for _ in range(VOCABULARY)
    ]

    def words() -> list[str]:
        return rng.choices(vocabulary, k=WORDS_PER_RECORD)

    slots = list(range(n_records))
    rng.shuffle(slots)
    taken = iter(slots)
    planted_text: dict[int, str] = {}
    duplicates = np.ones(n_records, dtype=np.int32)
    budget = int(DUPLICATED_SHARE * n_records)
    group = 0
    while budget >= GROUP_COPIES[0]:
        copies = min(GROUP_COPIES[group % len(GROUP_COPIES)], budget)
        text = " ".join(words())
        for copy in range(copies):
            at = next(taken)
            planted_text[at] = SPELLINGS[copy % len(SPELLINGS)](text)
            duplicates[at] = copies
        budget -= copies
        group += 1
    near_pairs = []
    for _ in range(int(NEAR_PAIR_SHARE * n_records)):
        base = words()
        mutant = list(base)
        for position in rng.sample(range(WORDS_PER_RECORD), rng.choice((1, 2))):
            mutant[position] = rng.choice(
                [w for w in rng.sample(vocabulary, 3) if w != base[position]]
            )
        pair = (next(taken), next(taken))
        planted_text[pair[0]], planted_text[pair[1]] = " ".join(base), " ".join(mutant)
        near_pairs.append(pair)
    pools = {
        t: [make(rng, i) for i in range(PII_DISTINCT_PER_TYPE)] for t, make in PII_MAKERS.items()
    }
    weights = [1 / (rank + 1) for rank in range(PII_DISTINCT_PER_TYPE)]
    pii: dict[str, Counter] = {t: Counter() for t in PII_MAKERS}
    for _ in range(int(PII_SHARE * n_records)):
        body = words()
        for pii_type in rng.sample(sorted(PII_MAKERS), rng.choice((1, 2))):
            value = rng.choices(pools[pii_type], weights)[0]
            pii[pii_type][value] += 1
            # One list item, so a second sentence never lands inside this one's value.
            body.insert(rng.randrange(len(body)), PII_SENTENCES[pii_type].format(value))
        planted_text[next(taken)] = " ".join(body)

    n_bytes = 0
    with path.open("w", encoding="utf-8") as out:
        for position in range(n_records):
            text = planted_text.get(position) or " ".join(words())
            line = json.dumps({"id": f"r{position}", "text": text}) + "\n"
            n_bytes += len(text.encode())
            out.write(line)
    return Planted(duplicates, near_pairs, pii, n_bytes)


# ---- the audit -------------------------------------------------------------------------------


@dataclass
class BenchAccess(LocalAccess):
    """A local access that carries the dataset's sha256 the way the service's audit does."""

    audit: Any = None


def _access(data_dir: Path, dataset_sha256: str) -> BenchAccess:
    settings = Settings(data_dir=data_dir, callback_secret="bench-dataset-scale")
    audit = SimpleNamespace(dataset_sha256=dataset_sha256, model_uri=None)
    return BenchAccess(settings=settings, audit=audit)


def _checks(kind: str) -> list:
    from worker.checks.registry import REGISTRY

    return REGISTRY.parse_checks([{"kind": kind}])


def _shard(
    access: BenchAccess, kind: str, dataset: Path, start: int, stop: int, n: int
) -> ShardInput:
    return ShardInput(
        access=access,
        target=Target(None, access),
        checks=_checks(kind),
        records=list(iter_records(dataset, start, stop)),
        dataset=dataset,
        n_records=n,
        reference_uri=None,
        batch_size=64,
    )


def _current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _report_progress(every_s: float) -> None:
    """Every `every_s`, the build's elapsed time, RAM and the function it is in: a run stopped
    before the build ends still says how far it got and what it held."""
    main = threading.main_thread().ident
    started = time.perf_counter()
    while True:
        time.sleep(every_s)
        frame, where = sys._current_frames().get(main), "?"
        while frame is not None:  # innermost first: the service's own function it is in
            if "/worker/" in frame.f_code.co_filename:
                where = f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_qualname}"
                break
            frame = frame.f_back
        print(
            f"  [build {time.perf_counter() - started:,.0f} s wall, {cpu_seconds():,.0f} s CPU, "
            f"RSS {_current_rss_mib():,.0f} MiB, peak {peak_rss_mib():,.0f} MiB, in {where}]",
            flush=True,
        )


def _build_child(kind: str, dataset: str, data_dir: str, sha256: str, n: int, out: Any) -> None:
    """Open the kind's pass over an empty shard: that builds every artefact it needs."""
    sys.stdout.reconfigure(line_buffering=True)
    threading.Thread(target=_report_progress, args=(PROGRESS_EVERY_S,), daemon=True).start()
    access = _access(Path(data_dir), sha256)
    started, cpu = time.perf_counter(), cpu_seconds()
    run_passes(_checks(kind), _shard(access, kind, Path(dataset), 0, 0, n))
    spent = Timed(time.perf_counter() - started, cpu_seconds() - cpu)
    out.put({"wall": spent.wall, "cpu": spent.cpu, "peak_rss_mib": peak_rss_mib()})


def build_artefacts(kind: str, dataset: Path, data_dir: Path, sha256: str, n: int) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(
        target=_build_child, args=(kind, str(dataset), str(data_dir), sha256, n, queue)
    )
    child.start()
    result = queue.get()
    child.join()
    if child.exitcode:
        raise RuntimeError(f"the {kind} build failed (exit {child.exitcode})")
    return result


def lookups(
    kind: str, dataset: Path, access: BenchAccess, n: int, shard_size: int
) -> Iterator[tuple[int, dict]]:
    """(record position, values) of every record, shard after shard."""
    for start in range(0, n, shard_size):
        shard = _shard(access, kind, dataset, start, min(n, start + shard_size), n)
        batches, _ = run_passes(shard.checks, shard)
        for batch, values, _ in batches:
            for i, record_values in zip(batch, values[0], strict=True):
                yield shard.records[i].index, record_values


# ---- checks against the planted answers ------------------------------------------------------


def check_duplication(found: np.ndarray, planted: Planted) -> tuple[bool, str]:
    wrong = int(np.count_nonzero(found != planted.duplicates))
    groups = Counter(planted.duplicates.tolist())
    return (
        wrong == 0,
        f"{wrong} records with a wrong count; planted groups {dict(sorted(groups.items()))}",
    )


def check_near(cluster: np.ndarray, size: np.ndarray, planted: Planted) -> tuple[bool, str]:
    together = sum(cluster[a] == cluster[b] and cluster[a] >= 0 for a, b in planted.near_pairs)
    recall = together / max(len(planted.near_pairs), 1)
    expected_clustered = set(np.flatnonzero(planted.duplicates > 1).tolist())
    expected_clustered |= {p for pair in planted.near_pairs for p in pair}
    stray = int(np.count_nonzero(size > 1)) - len(
        expected_clustered & set(np.flatnonzero(size > 1).tolist())
    )
    return (
        recall >= 0.9 and stray == 0,
        f"near-pair recall {recall:.3f}, {stray} unplanted records clustered",
    )


def check_pii(found: dict[str, Counter], planted: Planted) -> tuple[bool, str]:
    """Per type, the multiset of recurrence counts (keyed hashes can't be compared to the raw
    values here, their counts can) and the total occurrences."""
    notes, ok = [], True
    for pii_type, values in planted.pii.items():
        same = sorted(found.get(pii_type, Counter()).values()) == sorted(values.values())
        ok &= same
        notes.append(
            f"{pii_type} {sum(found.get(pii_type, Counter()).values())}/{sum(values.values())}"
        )
    extra = sorted(set(found) - set(planted.pii) - {"possible_secret"})
    ok &= not extra
    return ok, "found/planted occurrences: " + ", ".join(notes) + (
        f"; unplanted types {extra}" if extra else ""
    )


# ---- baselines -------------------------------------------------------------------------------

_BARE_PII = re.compile(
    r"[\w.+-]+@[\w-]+\.[\w.]+|\b\d{1,3}(?:\.\d{1,3}){3}\b|\b(?:\d[ -]?){13,19}\b|AKIA[A-Z0-9]{16}"
)


def baseline_hash_count(dataset: Path) -> float:
    """CPU seconds to count every record's normalised text by a 64-bit hash."""
    from worker.engine.corpus.exact import normalise

    started = cpu_seconds()
    counts = Counter(
        hashlib.blake2b(normalise(r.data["text"]).encode(), digest_size=8).digest()
        for r in iter_records(dataset)
    )
    assert counts
    return cpu_seconds() - started


def baseline_regex(dataset: Path) -> float:
    """CPU seconds of a bare regex pass for the same kinds of value."""
    started = cpu_seconds()
    found = sum(len(_BARE_PII.findall(r.data["text"])) for r in iter_records(dataset))
    assert found
    return cpu_seconds() - started


# ---- main ------------------------------------------------------------------------------------


def _artefacts(data_dir: Path, sha256: str) -> list[dict]:
    return [
        manifest(path)
        for path in sorted((indexes_dir(data_dir) / sha256).glob("*-*"))
        if path.is_dir()
    ]


def audit_kind(
    kind: str, dataset: Path, access: BenchAccess, n: int, args: Any, planted: Planted
) -> tuple[Timed, bool]:
    """The kind's build (child process, where it has artefacts) and its lookups in shards;
    prints both and whether the planted answers came back."""
    build = Timed()
    if kind != "pii":
        made = build_artefacts(
            kind, dataset, access.settings.data_dir, access.audit.dataset_sha256, n
        )
        build = Timed(made["wall"], made["cpu"])
        print(f"build (child process): {build}, peak RSS {made['peak_rss_mib']:,.0f} MiB")
        for found in _artefacts(access.settings.data_dir, access.audit.dataset_sha256):
            print(
                f"  artefact {found['name']}: {found['bytes'] / 2**20:,.1f} MiB on disk, "
                f"built in {found['seconds']:.1f} s"
            )
    started, cpu = time.perf_counter(), cpu_seconds()
    shards = lookups(kind, dataset, access, n, args.shard_size)
    if kind == "duplication":
        found = np.zeros(n, dtype=np.int32)
        for index, values in shards:
            found[index] = values["duplicates"]
        ok, note = check_duplication(found, planted)
    elif kind == "near_duplicates":
        cluster = np.full(n, -1, dtype=np.int64)
        size = np.zeros(n, dtype=np.int64)
        for index, values in shards:
            cluster[index] = -1 if values["cluster"] is None else values["cluster"]
            size[index] = values["cluster_size"]
        ok, note = check_near(cluster, size, planted)
    else:
        by_hash: dict[str, Counter] = {}
        for _, values in shards:
            for value in values["values"]:
                by_hash.setdefault(value["type"], Counter())[value["hash"]] += 1
        ok, note = check_pii(by_hash, planted)
    lookup = Timed(time.perf_counter() - started, cpu_seconds() - cpu)
    n_shards = -(-n // args.shard_size)
    print(f"lookups over {n_shards} shards: {lookup} ({n / lookup.cpu:,.0f} records per CPU s)")
    total = Timed(build.wall + lookup.wall, build.cpu + lookup.cpu)
    print(f"per million records: {total.cpu * 1e6 / n / 60:.1f} CPU min")
    print(f"recovered planted answers: {'PASS' if ok else 'FAIL'} ({note})")
    return total, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/memaudit-dataset-scale"))
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE)
    args = parser.parse_args()
    # Each figure is printed as its stage ends: a run stopped early keeps what it measured.
    sys.stdout.reconfigure(line_buffering=True)
    n = args.records
    args.workdir.mkdir(parents=True, exist_ok=True)
    dataset = args.workdir / f"corpus-{n}.jsonl"
    data_dir = args.workdir / f"data-{n}"

    started = time.perf_counter()
    planted = write_corpus(dataset, n)
    mib, took = planted.n_bytes / 2**20, time.perf_counter() - started
    print(f"corpus: {n:,} records, {mib:,.0f} MiB of text, written in {took:.0f} s")
    with dataset.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    access = _access(data_dir, sha256)

    verdicts: dict[str, bool] = {}
    totals: dict[str, Timed] = {}
    for kind in args.kinds:
        print(f"\n== {kind}")
        totals[kind], verdicts[kind] = audit_kind(kind, dataset, access, n, args, planted)

    print("\n== artefacts (on disk; wall time as recorded by built())")
    made = {m["name"]: m for m in _artefacts(data_dir, sha256)}
    for name, found in made.items():
        print(f"{name:>18}: {found['bytes'] / 2**20:,.1f} MiB, {found['seconds']:.1f} s")
    print("\n== baselines (same run, CPU seconds)")
    if "duplication" in args.kinds:
        hashed = baseline_hash_count(dataset)
        build = totals["duplication"].cpu
        ratio = build / hashed
        print(f"hash count of normalised texts: {hashed:.1f} s; duplication / that: {ratio:.0f}x")
    if "pii" in args.kinds:
        bare = baseline_regex(dataset)
        print(
            f"bare regex PII pass: {bare:.1f} s; pii kind / that = {totals['pii'].cpu / bare:.1f}x"
        )
    cpu = sum(t.cpu for t in totals.values())
    wall = sum(t.wall for t in totals.values())
    per_million = cpu * 1e6 / n / 60
    print(
        f"\nall kinds: {wall:.0f} s wall, {cpu:.0f} s CPU = {per_million:.1f} CPU min per million"
    )
    print(f"peak RSS of this process (lookups): {peak_rss_mib():,.0f} MiB")
    print("PLANTED COUNTS RECOVERED: " + ("PASS" if all(verdicts.values()) else "FAIL"))


if __name__ == "__main__":
    main()
