"""Audits of models above the size threshold go to the large-model queue, through a real API
onto a real Redis broker; smaller ones, and every model while the queue is off, to the default."""

from __future__ import annotations

import math
import shutil
import uuid

import redis
from safetensors import safe_open
from sqlalchemy import func, select

from core.config import Settings
from core.models import Shard
from core.submission import model_queue
from tests.flows import submit, wait_final


def test_a_model_above_the_threshold_is_enqueued_on_the_large_model_queue(
    make_stack, tiny_lm, redis_url
) -> None:
    large = f"memaudit-large-{uuid.uuid4().hex[:8]}"
    stack = make_stack(broker_url=redis_url, large_model_queue=large, large_model_min_bytes=1)
    audit = submit(stack.client, stack.headers, tiny_lm.model_dir, f"path:{tiny_lm.dataset_path}")
    with stack.db.session() as session:
        shards = session.scalar(
            select(func.count()).select_from(Shard).where(Shard.audit_id == audit["id"])
        )
    broker = redis.Redis.from_url(redis_url)
    assert shards > 1
    assert broker.llen(large) == shards and broker.llen(stack.settings.queue) == 0
    # A worker started for that queue (one that owns several GPUs, on a GPU machine) runs the
    # shards; finalization is an ordinary task on the default queue, which it serves too here.
    stack.start_worker(args=["--queues", f"{large},{stack.settings.queue}"])
    assert wait_final(stack.client, stack.headers, audit["id"])["status"] == "succeeded"


def test_the_threshold_and_the_switch_decide_the_queue(tiny_lm, tmp_path) -> None:
    # The model copied beside a 10 GB (sparse) pickled checkpoint the loader never reads.
    folder = tmp_path / "models" / "canary"
    shutil.copytree(tiny_lm.model_dir, folder)
    with (folder / "pytorch_model.bin").open("wb") as handle:
        handle.truncate(10 * 10**9)
    uri = f"path:{folder}"
    roots = str(folder.parent)
    # What a GPU loads: every parameter in bf16, whatever dtype the file stores.
    with safe_open(folder / "model.safetensors", "pt") as weights:
        size = 2 * sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())  # noqa: SIM118

    def settings(**values) -> Settings:
        return Settings(data_dir=tmp_path, model_roots=roots, queue="default", **values)

    assert model_queue(settings(), uri) == "default"  # no large-model queue configured
    on = {"large_model_queue": "large"}
    assert model_queue(settings(**on, large_model_min_bytes=size), uri) == "large"
    assert model_queue(settings(**on, large_model_min_bytes=size + 1), uri) == "default"
    assert model_queue(settings(**on, large_model_min_bytes="1GiB"), uri) == "default"
    assert model_queue(settings(**on, large_model_min_bytes=1), None) == "default"  # no model
