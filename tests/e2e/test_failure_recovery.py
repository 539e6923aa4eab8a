"""The failures a fleet of GPU workers has every day, each with real processes and servers:
Redis restarted, PostgreSQL restarted, a shard delivered twice, a model that fails."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from core.models import SampleResult, Shard
from tests.conftest import REPO, filler_records, wait_for, write_jsonl
from tests.e2e.servers import private_postgres, private_redis
from tests.flows import all_samples, submit, upload, wait_final

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

FAULTS = {"PYTHONPATH": str(Path(__file__).parent / "faults") + ":" + str(REPO)}


def _rows(stack, audit_id: str) -> tuple[int, int]:
    """(rows, distinct sample indexes) of one audit."""
    with stack.db.session() as session:
        where = SampleResult.audit_id == audit_id
        rows = session.scalar(select(func.count()).select_from(SampleResult).where(where))
        distinct = session.scalar(
            select(func.count(func.distinct(SampleResult.sample_index))).where(where)
        )
    return rows, distinct


def _shards(stack, audit_id: str) -> list[Shard]:
    with stack.db.session() as session:
        return list(
            session.scalars(select(Shard).where(Shard.audit_id == audit_id).order_by(Shard.index))
        )


def _queued_messages(url: str, queue: str) -> int:
    return redis.Redis.from_url(url).llen(queue)


def test_queued_audits_survive_a_redis_restart(make_stack, postgres_url, tiny_lm) -> None:
    with private_redis() as broker:
        stack = make_stack(database_url=postgres_url, broker_url=broker.url, orphan_after_seconds=3)
        dataset = upload(stack.client, stack.headers, tiny_lm.dataset_path)
        audits = [submit(stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"])]
        audits.append(submit(stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"]))
        assert _queued_messages(broker.url, stack.settings.queue) == 6  # 2 audits x 3 shards

        broker.stop()
        # Submitting while the broker is down still records the audit: the row is the truth.
        audits.append(submit(stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"]))
        broker.start()
        assert _queued_messages(broker.url, stack.settings.queue) == 0  # every message is gone

        stack.start_worker()  # the reaper finds the queued shards in the database
        for audit in audits:
            audit = wait_final(stack.client, stack.headers, audit["id"], timeout=180)
            assert audit["status"] == "succeeded", audit
            assert _rows(stack, audit["id"]) == (48, 48)


def test_a_postgres_restart_mid_run_answers_503_then_resumes(make_stack, redis_url, tiny_lm):
    n = 400
    with private_postgres() as database:
        stack = make_stack(
            database_url=database.url,
            broker_url=redis_url,
            shard_size=100,
            batch_size=2,
            lease_seconds=3,
            retry_delay_seconds=1,
        )
        dataset = write_jsonl(tiny_lm.dataset_path.parent / "pg-restart.jsonl", filler_records(n))
        worker = stack.start_worker()
        audit = submit(stack.client, stack.headers, tiny_lm.model_dir, f"path:{dataset}")
        wait_for(
            lambda: sum(s.done for s in _shards(stack, audit["id"])) >= 20,
            120,
            "the audit to make progress",
            interval=0.05,
        )

        database.stop()
        down = stack.client.get(f"/v1/audits/{audit['id']}", headers=stack.headers)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "database_unavailable"
        assert down.headers["retry-after"] == "5"
        ready = stack.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] == "ok"
        time.sleep(6)  # the worker meets the outage: its writes fail, and it retries
        database.start()

        audit = wait_final(stack.client, stack.headers, audit["id"], timeout=300)
        assert audit["status"] == "succeeded", (audit, worker.tail())
        assert _rows(stack, audit["id"]) == (n, n)
        assert "OperationalError" in worker.log_path.read_text()  # the outage was really met
        assert stack.client.get("/readyz").status_code == 200


def test_a_shard_delivered_twice_runs_once(make_stack, postgres_url, redis_url, tiny_lm):
    n = 300
    stack = make_stack(
        database_url=postgres_url, broker_url=redis_url, shard_size=n, batch_size=2,
        worker_concurrency=2,
    )  # fmt: skip
    dataset = write_jsonl(tiny_lm.dataset_path.parent / "twice.jsonl", filler_records(n))
    worker = stack.start_worker()
    audit = submit(stack.client, stack.headers, tiny_lm.model_dir, f"path:{dataset}")
    (shard,) = _shards(stack, audit["id"])
    wait_for(lambda: _shards(stack, audit["id"])[0].done >= 10, 120, "the shard to start")
    # What Redis does when a visibility timeout passes: the same message again, to a second
    # process of the worker while the first still runs it.
    stack.client.app.state.celery.send_task(
        "memaudit.run_shard", args=[shard.id], queue=stack.settings.queue
    )
    audit = wait_final(stack.client, stack.headers, audit["id"], timeout=240)
    assert audit["status"] == "succeeded", audit
    assert _rows(stack, audit["id"]) == (n, n)
    (shard,) = _shards(stack, audit["id"])
    assert shard.attempts == 1  # the copy found the lease held and never claimed it
    log = worker.log_path.read_text()
    assert f"shard {shard.id}: skipped" in log and f"shard {shard.id}: succeeded" in log


def _broken_copy(tiny_lm, name: str, change) -> Path:
    copy = tiny_lm.model_dir.parent / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(tiny_lm.model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(change(config)))
    return copy


def test_a_failing_model_fails_its_audit_and_the_worker_serves_on(
    make_stack, postgres_url, redis_url, tiny_lm
) -> None:
    stack = make_stack(
        database_url=postgres_url, broker_url=redis_url, max_attempts=2, retry_delay_seconds=0.5
    )
    out_of_memory = _broken_copy(tiny_lm, "oom-gpt2", lambda c: {**c, "memaudit_fault": "oom"})
    kernel_error = _broken_copy(tiny_lm, "raising-gpt2", lambda c: {**c, "memaudit_fault": "raise"})
    # A checkpoint that does not fit its config: loading it raises, and always would.
    mismatched = _broken_copy(
        tiny_lm, "mismatched-gpt2", lambda c: {**c, "n_embd": c["n_embd"] * 2}
    )
    worker = stack.start_worker(extra_env={**FAULTS, "MEMAUDIT_TEST_FAULTS": "1"})
    dataset = upload(stack.client, stack.headers, tiny_lm.dataset_path)
    oom = submit(stack.client, stack.headers, out_of_memory, dataset["uri"])
    broken = submit(stack.client, stack.headers, mismatched, dataset["uri"])
    raising = submit(stack.client, stack.headers, kernel_error, dataset["uri"])
    healthy = submit(stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"])

    oom = wait_final(stack.client, stack.headers, oom["id"])
    assert oom["status"] == "failed"
    assert oom["error"].startswith("out of memory scoring a batch of up to 4 sequences")
    assert "OutOfMemoryError: CUDA out of memory" in oom["error"]
    broken = wait_final(stack.client, stack.headers, broken["id"])
    assert broken["status"] == "failed"
    assert broken["error"].startswith("could not load the model in mismatched-gpt2: RuntimeError")
    assert "ignore_mismatched_sizes" in broken["error"]
    # Never retried: the first shard to load fails the audit, and a shard claimed after that
    # finds the audit over and is never attempted (attempts 0).
    attempts = sorted(shard.attempts for shard in _shards(stack, broken["id"]))
    assert attempts[-1] == 1 and set(attempts) <= {0, 1}
    # An unexpected error may be transient: retried up to max_attempts, then the audit fails.
    raising = wait_final(stack.client, stack.headers, raising["id"])
    assert raising["status"] == "failed"
    # Every shard raises; whichever uses up its attempts first fails the audit.
    assert re.match(
        r"shard [0-2] gave up after 2 attempts; last error: RuntimeError", raising["error"]
    )
    assert "CUDNN_STATUS_EXECUTION_FAILED" in raising["error"]
    healthy = wait_final(stack.client, stack.headers, healthy["id"])
    assert healthy["status"] == "succeeded", healthy
    assert len(all_samples(stack.client, stack.headers, healthy["id"])) == 48

    # The same worker goes on: one more audit after the failures, no restart.
    again = submit(stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"])
    assert wait_final(stack.client, stack.headers, again["id"])["status"] == "succeeded"
    assert worker.process.poll() is None


def test_weights_broken_after_submit_fail_the_audit_once_by_name(make_stack, tiny_lm) -> None:
    """A checkpoint that went bad between submit and load: a bad file, not a transient error."""
    stack = make_stack(max_attempts=3, retry_delay_seconds=0.5)
    copy = _broken_copy(tiny_lm, "truncated-gpt2", lambda c: c)
    dataset = upload(stack.client, stack.headers, tiny_lm.dataset_path)
    audit = submit(stack.client, stack.headers, copy, dataset["uri"])
    weights = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    stack.start_worker()
    audit = wait_final(stack.client, stack.headers, audit["id"])
    assert audit["status"] == "failed"
    assert audit["error"].startswith("model.safetensors is not a valid safetensors file"), audit
    attempts = sorted(shard.attempts for shard in _shards(stack, audit["id"]))
    assert attempts[-1] == 1 and set(attempts) <= {0, 1}
