"""A dataset audit's shards shared by two Celery workers on PostgreSQL + Redis: both take
shards, the corpus artefacts are built once on this host (the workers share its data dir, so
one builds under the file lock and the other waits and opens it), and every count equals a
brute force computed here."""

from __future__ import annotations

import random
import unicodedata
from itertools import combinations
from pathlib import Path

import pytest
from sqlalchemy import select

from core.models import Shard
from tests.conftest import wait_for, write_jsonl
from tests.flows import all_samples, submit, upload, wait_final

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

SHARD_SIZE = 8
SHINGLE = 5


def corpus(seed: int = 11) -> list[dict]:
    """Unique records of 80 random words, planted exact copies (groups of 2, 3 and 6, spelt
    differently) and near-duplicate pairs (one word of 80 replaced: Jaccard 71/81)."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}x{rng.randrange(10**6)}" for i in range(3000)]
    texts = [" ".join(rng.choices(vocabulary, k=80)) for _ in range(30)]
    for copies in (2, 3, 6):
        text = " ".join(rng.choices(vocabulary, k=80))
        texts += [text, *[text.upper() if c % 2 else "  " + text for c in range(1, copies)]]
    for _ in range(3):
        words = rng.choices(vocabulary, k=80)
        texts.append(" ".join(words))
        words[20] = "replaced"
        texts.append(" ".join(words))
    rng.shuffle(texts)
    return [{"id": f"r{i}", "text": text} for i, text in enumerate(texts)]


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])  # the field after the state


def brute_duplicates(records: list[dict]) -> list[int]:
    canon = [" ".join(unicodedata.normalize("NFKC", r["text"]).casefold().split()) for r in records]
    return [canon.count(mine) for mine in canon]


def brute_clusters(records: list[dict], threshold: float = 0.8) -> list[int]:
    """Each record's cluster size: components of the pairs whose word 5-shingle Jaccard
    reaches the threshold, every pair compared."""
    shingles = []
    for record in records:
        words = record["text"].casefold().split()
        shingles.append({tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)})
    parent = list(range(len(records)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in combinations(range(len(records)), 2):
        if len(shingles[a] & shingles[b]) / len(shingles[a] | shingles[b]) >= threshold:
            parent[root(a)] = root(b)
    roots = [root(i) for i in range(len(records))]
    return [roots.count(mine) for mine in roots]


def test_two_workers_share_a_dataset_audit(make_stack, postgres_url, redis_url, tmp_path):
    records = corpus()
    stack = make_stack(database_url=postgres_url, broker_url=redis_url, shard_size=SHARD_SIZE)
    workers = [stack.start_worker(), stack.start_worker()]
    for worker in workers:  # both listening before the first shard is queued
        wait_for(lambda w=worker: " ready." in w.log_path.read_text(), 60, "a worker to start")

    dataset = upload(stack.client, stack.headers, write_jsonl(tmp_path / "c.jsonl", records))
    accepted = submit(
        stack.client,
        stack.headers,
        None,
        dataset["uri"],
        [{"kind": "duplication"}, {"kind": "near_duplicates"}],
    )
    audit = wait_final(stack.client, stack.headers, accepted["id"], timeout=90)
    assert audit["status"] == "succeeded", (audit, workers[0].tail(), workers[1].tail())

    with stack.db.session() as session:
        shards = session.scalars(select(Shard).where(Shard.audit_id == audit["id"])).all()
    assert len(shards) == -(-len(records) // SHARD_SIZE) >= 6
    # The owner is host:pid:nonce of a worker's pool process; its parent is the worker.
    owners = {int(shard.info["worker"].split(":")[1]) for shard in shards}
    assert {parent_pid(pid) for pid in owners} == {w.process.pid for w in workers}, owners

    # One directory per artefact, named alike by every shard of both workers, no build left
    # half-done: the second worker waited on the lock and opened what the first built.
    assert {tuple(sorted(shard.info["artefacts"].items())) for shard in shards} == {
        tuple(sorted(shards[0].info["artefacts"].items()))
    }
    indexes = stack.settings.data_dir / "indexes"
    for name in ("normalised-counts", "exact-index", "near-duplicates"):
        assert len(list(indexes.glob(f"*/{name}-*/BUILT.json"))) == 1, name
    assert not list(indexes.glob("*/.*building*"))

    duplicates = {
        r["sample_id"]: r["values"]
        for r in all_samples(stack.client, stack.headers, audit["id"], "duplication")
    }
    near = {
        r["sample_id"]: r["values"]
        for r in all_samples(stack.client, stack.headers, audit["id"], "near_duplicates")
    }
    assert [duplicates[r["id"]]["duplicates"] for r in records] == brute_duplicates(records)
    assert [near[r["id"]]["cluster_size"] for r in records] == brute_clusters(records)
    assert audit["summary"]["duplication"]["n_duplicate_records"] == 11
