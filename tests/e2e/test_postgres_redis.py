"""The production path: PostgreSQL, Redis and real worker processes, crash included."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.models import SampleResult, Shard
from tests.conftest import filler_records, wait_for, write_jsonl
from tests.flows import all_samples, run_canary_audit, submit, wait_final

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_canary_audit_on_postgres_and_redis(make_stack, postgres_url, redis_url, tiny_lm):
    stack = make_stack(database_url=postgres_url, broker_url=redis_url, shard_size=16)
    stack.start_worker()
    audit = run_canary_audit(stack.client, stack.headers, tiny_lm)
    assert audit["provenance"]["timings"]["n_shards"] == 3  # 48 records in shards of 16

    checks = [{"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}}]
    extraction = submit(
        stack.client, stack.headers, tiny_lm.model_dir, audit["dataset_uri"], checks
    )
    extraction = wait_final(stack.client, stack.headers, extraction["id"])
    assert extraction["summary"]["extraction"]["members"]["greedy_rate"] > 0.5
    page = stack.client.get(
        f"/v1/audits/{extraction['id']}/samples",
        headers=stack.headers,
        params={"check": "extraction", "order_by": "log10_pz.topk40_T1", "desc": True},
    ).json()
    ranked = [row["values"]["log10_pz"]["topk40_T1"] for row in page["data"]]
    finite = [value for value in ranked if value is not None]
    assert finite == sorted(finite, reverse=True) and ranked[: len(finite)] == finite


def _shard(stack, audit_id: str) -> Shard:
    with stack.db.session() as session:
        return session.scalars(select(Shard).where(Shard.audit_id == audit_id)).one()


def test_worker_killed_mid_shard_recovers(make_stack, postgres_url, redis_url, tiny_lm):
    n = 1500
    stack = make_stack(
        database_url=postgres_url, broker_url=redis_url, shard_size=n, batch_size=2, lease_seconds=3
    )
    dataset = write_jsonl(tiny_lm.dataset_path.parent / "crash.jsonl", filler_records(n))
    first = stack.start_worker()
    audit = submit(stack.client, stack.headers, tiny_lm.model_dir, f"path:{dataset}")

    wait_for(
        lambda: _shard(stack, audit["id"]).done >= 40,
        120,
        "the shard to make progress",
        interval=0.02,
    )
    first.kill_hard()
    crashed = _shard(stack, audit["id"])
    assert crashed.status == "running" and 0 < crashed.done < n, (crashed.status, crashed.done)

    stack.start_worker()
    audit = wait_final(stack.client, stack.headers, audit["id"], timeout=240)
    assert audit["status"] == "succeeded", audit
    with stack.db.session() as session:
        rows = session.scalar(
            select(func.count())
            .select_from(SampleResult)
            .where(SampleResult.audit_id == audit["id"])
        )
        distinct = session.scalar(
            select(func.count(func.distinct(SampleResult.sample_index))).where(
                SampleResult.audit_id == audit["id"]
            )
        )
    assert rows == distinct == n
    shard = _shard(stack, audit["id"])
    assert shard.attempts == 2 and shard.status == "succeeded"
    assert audit["provenance"]["timings"]["retried_shards"] == 1

    # The same audit again, undisturbed: every record's values are the same, to the bit.
    calm = submit(stack.client, stack.headers, tiny_lm.model_dir, f"path:{dataset}")
    calm = wait_final(stack.client, stack.headers, calm["id"], timeout=240)
    assert calm["status"] == "succeeded", calm
    recovered = {
        r["sample_index"]: r["values"]
        for r in all_samples(stack.client, stack.headers, audit["id"])
    }
    undisturbed = {
        r["sample_index"]: r["values"] for r in all_samples(stack.client, stack.headers, calm["id"])
    }
    assert len(recovered) == n and recovered == undisturbed
    assert audit["summary"] == calm["summary"]
