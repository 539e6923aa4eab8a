"""Logs are JSON, one object per line, and every line about an audit names it."""

from __future__ import annotations

import json

import pytest

from tests.flows import submit, upload, wait_final

pytestmark = [pytest.mark.slow]


def test_worker_lines_are_json_and_carry_the_audit_id(make_stack, tiny_lm) -> None:
    stack = make_stack()
    worker = stack.start_worker()
    dataset = upload(stack.client, stack.headers, tiny_lm.dataset_path)
    audit = wait_final(
        stack.client,
        stack.headers,
        submit(stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"])["id"],
    )
    assert audit["status"] == "succeeded"
    worker.stop()

    lines = worker.log_path.read_text().splitlines()
    # Celery's start-up banner is printed, not logged; everything logged is JSON.
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(entries) > 10
    for entry in entries:
        assert {"ts", "level", "logger", "message"} <= set(entry)
    task_lines = [e for e in entries if e.get("task_id") and e["logger"] != "celery.beat"]
    about_audit = [e for e in task_lines if "reap" not in e["message"]]
    assert len(about_audit) >= 9  # 3 shards: claimed, done, task result; then finalize
    assert {e.get("audit_id") for e in about_audit} == {audit["id"]}, about_audit
    claimed = [e for e in entries if e["message"].startswith("claimed shard")]
    assert len(claimed) == 3 and all(e["shard_id"] for e in claimed)
    assert any(e["logger"] == "celery.app.trace" for e in about_audit)  # Celery's own lines too
